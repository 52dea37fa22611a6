#!/usr/bin/env python3
"""Independent readers of a cairn daily archive's seek table (the zstd seekable format).

Usage: archive-readers.py ARCHIVE MANIFEST SOURCE_ROOT
- pyzstd.SeekableZstdFile opens the archive (it refuses a file without a valid seek table) and
  reads 1 MiB from the middle of the tar stream: equal to the same range of `zstd -dc`;
- ratarmountcore (with indexed_zstd) opens it and reads a file from the middle of the
  manifest: equal to the source file.
Prints one line per reader; exits non-zero on any difference.
"""

import base64
import json
import os
import subprocess
import sys

import pyzstd
from ratarmountcore.mountsource.factory import open_mount_source

archive, manifest_path, root = sys.argv[1:4]

with pyzstd.SeekableZstdFile(archive, "r") as f:
    total = f.seek(0, os.SEEK_END)
    mid = total // 2
    f.seek(mid)
    got = f.read(1 << 20)
plain = subprocess.run(["zstd", "-dc", archive], capture_output=True, check=True).stdout
if got != plain[mid:mid + len(got)] or total != len(plain):
    sys.exit(f"pyzstd: the range at {mid} differs from zstd -dc ({total} / {len(plain)} bytes)")
print(f"pyzstd.SeekableZstdFile: {len(got)} bytes at {mid} of {total} equal zstd -dc")


def name(p):
    return base64.b64decode(p["b64"]).decode("utf-8", "surrogateescape") if isinstance(p, dict) else p


manifest = json.load(open(manifest_path))
files = [e for e in manifest["entries"] if e["type"] == "file" and e["size"] > 0 and not e.get("link")]
entry = files[len(files) // 2]
path = name(entry["path"])
source = open(os.path.join(root, path), "rb").read()
ms = open_mount_source(archive)
info = ms.lookup("/" + path)
if info is None:
    sys.exit(f"ratarmountcore: {path} not found")
with ms.open(info) as fh:
    data = fh.read()
if data != source:
    sys.exit(f"ratarmountcore: {path} differs from the source ({len(data)} / {len(source)} bytes)")
print(f"ratarmountcore: {path} ({len(data)} bytes) equals the source")
