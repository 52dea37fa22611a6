#!/usr/bin/env python3
"""End-to-end comparison of cairn with restic, borg and `tar | zstd`, side by side on one corpus.

Usage: benches/compare.py [--rounds N] [--work DIR] [--scale-files N] [--skip-scale] [--mount-files N]
                          [--s3 [--link RATE,LATENCY] | --gc | --offsite | --seek | --tiny | --mount]

Builds a corpus of real files found on the machine (source trees and docs as notes, wallpapers
from Debian packages plus incompressible camera-like files, a tarball, large binaries, a sparse
disk image, a log), then for every tool, with the page cache warm and local repositories:
full backup, no-change rerun, one day of changes applied in place, full restore; for cairn also the
daily export and the next day's export, against `tar -cf - ... | zstd -3 -T2` of the source.
Records wall time, CPU time, peak RSS and repository size, and prints a markdown table with the
ratios that docs/BENCHMARKS.md tracks. It reports; it never fails because a goal is missed.

With --s3 the same operations run with cairn's store and exports and restic's repository on the
project's Garage server on loopback (scripts/s3-server.sh), the export against the plan's
`tar | zstd -3 -T2 | aws s3 cp -`, and cairn's own count of its requests and bytes per operation
(GETs, PUTs, HEADs, copies inside the server, bytes down, up and copied; both stores summed).
Each export's read-back floor is measured on the archive it just wrote by `s3-floor` (a
cairn-benches binary reading the object by parallel ranged GETs, 8 MiB each and 8 in flight, as
cairn's own reads, into SHA-256): an export must read every byte of its archive once for its
.sha256. The aws CLI's `aws s3 cp - | sha256sum` of the next day's archive stays as a row beside
it. With --link RATE,LATENCY (e.g. 117,2, a Raspberry Pi's 1 GbE), every request of the round
(cairn, restic, the pipeline's aws, s3-floor) goes through `link-proxy` (cairn-benches), which
caps each direction at RATE MB/s shared by all connections and delays each by LATENCY ms one way;
the report then adds the goals against the link's floor (the archive's bytes at RATE) and is
written to results-s3-link.md instead of results-s3.md.

With --gc: fourteen simulated days backed up by cairn, restic and borg, then one keep rule
(`keep_daily = 7`) and the removal of what is no longer needed, `cairn prune` beside
`restic forget --prune` and `borg prune` + `borg compact`; and the gc of the 1,000,000-file
repository beside `restic prune`.

With --tiny: a share of nothing but tiny notes (200,000 of 10-400 bytes in folders of 500, and
1,000,000 unless --skip-scale): cairn's first backup beside restic's; the daily export, the next
day's after appends to whole folders, and the day after's with appends spread over every folder,
each beside `tar | zstd -3 -T2`; and each export's floor (SHA-256 of its archive plus zstd -3 of
what was compressed rather than reused).

With --offsite: one exported day (from an earlier full run) through `cairn offsite sync` with the
rclone uploader to a local remote, beside `rclone copy` of the same day alone.

With --mount: a tree of 1,000 notes of 1-20 KiB in 20 folders and one 200 MiB file of random
bytes, backed up once by cairn and once by restic, then browsed through `cairn mount
--no-archives` beside `restic mount`, each mounted afresh in every round: the time until
snapshots/ appears, `ls -lR` of the snapshot right after mounting, `xargs cat` of the 1,000 notes,
`cat` of the 200 MiB file, and (unless --mount-files 0) `find -type f -size -100c` over 200,000
files of a few bytes in a mount of their own; wall time and the mount process's peak RSS (VmHWM).
Needs /dev/fuse and fuse3; a failed or interrupted run leaves no mount behind (and one left by
a killed run is undone by the next).
"""

import argparse
import contextlib
import json
import os
import random
import re
import select
import shutil
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ["notetaking", "images", "backup"]


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, **kw)


def install():
    need = [p for p, exe in [("restic", "restic"), ("borgbackup", "borg"), ("time", "/usr/bin/time"),
                             ("zstd", "zstd")] if not shutil.which(exe)]
    if not Path("/usr/share/wallpapers").exists():
        need.append("plasma-workspace-wallpapers")
    if not Path("/usr/share/backgrounds/gnome").exists():
        need.append("gnome-backgrounds")
    if need:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(sudo + ["apt-get", "update", "-qq"])
        sh(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + need,
           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def install_aws():
    """The aws CLI for the S3 mode's `aws s3 cp -`, as scripts/setup.sh installs it."""
    scripts = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_path('scripts'))"],
                             capture_output=True, text=True).stdout.strip()
    if scripts and scripts not in os.environ["PATH"].split(":"):
        os.environ["PATH"] += ":" + scripts
    if not shutil.which("aws"):
        sh([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "awscli"])


def cargo_target():
    return os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/cairn-ci/target"))


def build_cairn():
    target = cargo_target()
    sh(["cargo", "build", "--release", "--locked", "-p", "cairn"], cwd=ROOT,
       env={**os.environ, "CARGO_TARGET_DIR": target})
    return Path(target) / "release" / "cairn"


def build_s3_tools():
    """The S3 mode's helpers from cairn-benches: `link-proxy` (a shaped loopback link) and
    `s3-floor` (an export's read-back floor). Returns their paths, in that order."""
    target = cargo_target()
    sh(["cargo", "build", "--release", "--locked", "-p", "cairn-benches", "--bin", "link-proxy", "--bin", "s3-floor"],
       cwd=ROOT, env={**os.environ, "CARGO_TARGET_DIR": target})
    return Path(target) / "release" / "link-proxy", Path(target) / "release" / "s3-floor"


def camera_file(path, size, rng):
    # A JPEG-like header followed by incompressible data, as camera output is.
    with open(path, "wb") as f:
        f.write(b"\xff\xd8\xff\xe1" + b"Exif\x00\x00" + bytes(54))
        f.write(rng.randbytes(size - 64))


def copy_tree(src, dst, budget):
    """Copies regular files below src into dst until budget bytes; returns bytes copied."""
    used = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            s = Path(dirpath) / name
            if not s.is_file() or s.is_symlink():
                continue
            size = s.stat().st_size
            if used + size > budget:
                return used
            d = dst / s.relative_to(src)
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)
            used += size
    return used


def make_corpus(pristine):
    """About 2.3 GB in more than 20,000 files. Built once and reused."""
    marker = pristine / ".complete"
    if marker.exists():
        return
    shutil.rmtree(pristine, ignore_errors=True)
    rng = random.Random(2026)
    notes, images, backup = (pristine / f for f in FOLDERS)
    cargo_src = next((Path.home() / ".cargo/registry/src").glob("*"), None)
    n = 0
    if cargo_src:
        n += copy_tree(cargo_src, notes / "src", 450 << 20)
    n += copy_tree(Path("/usr/share/doc"), notes / "doc", 120 << 20)
    for src in [Path("/usr/share/wallpapers"), Path("/usr/share/backgrounds")]:
        if src.exists():
            copy_tree(src, images / "wallpapers" / src.name, 300 << 20)
    for album in range(12):
        d = images / f"album-{album:03}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(25):
            camera_file(d / f"IMG_{album:03}{i:03}.JPG", rng.randrange(3 << 20, 6 << 20), rng)
    backup.mkdir(parents=True, exist_ok=True)
    sh(["tar", "-cf", str(backup / "include.tar"), "-C", "/usr", "include"])
    bins = backup / "binaries"
    bins.mkdir()
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True).stdout.strip()
    for lib in sorted(Path(sysroot, "lib").glob("*.so"))[:4]:
        shutil.copy2(lib, bins / lib.name)
    copy_tree(Path("/usr/lib/x86_64-linux-gnu"), bins / "lib", 250 << 20)
    # A 1 GiB sparse disk image with 64 MiB of data scattered in it.
    with open(backup / "disk.img", "wb") as f:
        f.truncate(1 << 30)
        for i in range(16):
            f.seek(i * (64 << 20))
            f.write(rng.randbytes(4 << 20))
    with open(backup / "app.log", "w") as f:
        for i in range(1_200_000):
            f.write(f"2026-11-{1 + i // 50000:02}T{i % 24:02}:{i % 60:02}:{i * 7 % 60:02}Z INFO "
                    f"job=backup-{i % 17} file={i} bytes={i * 7919 % 100000} status=ok\n")
    marker.write_text("ok\n")


def apply_changes(corpus, rng):
    """One day of use: 1% of notes edited, new photos, a log appended, 1 MiB rewritten inside
    the 1 GiB image, an album folder renamed."""
    notes = sorted(p for p in (corpus / "notetaking").rglob("*") if p.is_file())
    for p in notes[::100]:
        with open(p, "a") as f:
            f.write("\nedited today\n")
    d = corpus / "images" / "new-day"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        camera_file(d / f"IMG_NEW{i:03}.JPG", 4 << 20, rng)
    with open(corpus / "backup" / "app.log", "a") as f:
        for i in range(60_000):
            f.write(f"2026-11-30T01:{i % 60:02}:00Z INFO job=nightly file={i} status=ok\n")
    with open(corpus / "backup" / "disk.img", "r+b") as f:
        f.seek(512 << 20)
        f.write(rng.randbytes(1 << 20))
    os.rename(corpus / "images" / "album-003", corpus / "images" / "album-003-renamed")


def settle(*paths):
    """The same starting point for every measured operation: dirty pages written, the page cache
    dropped (as root), then the inputs of the operation read once, so that it runs warm and
    without paying for reclaiming pages that earlier operations filled. Without the drop, the
    tools measured later in a round ran up to 2x slower on this VM, whichever they were."""
    sh(["sync"])
    if os.geteuid() == 0:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    for p in (p for p in paths if Path(p).exists()):
        # cat, not tar: GNU tar skips reading file contents when its output is /dev/null.
        sh(f"find {p} -type f -exec cat {{}} + > /dev/null")


# The fields of cairn's "S3 requests made" log line that measure() sums.
S3_COUNTS = ("requests", "gets", "puts", "heads", "deletes", "bytes_read", "bytes_written", "copies", "bytes_copied")


def measure(cmd, env=None, cwd=None, stdout=None):
    """Wall, CPU and peak RSS of `cmd` (stdout into the file `stdout`, if given)."""
    out = Path("/tmp/cairn-bench-time")
    full = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(out)] + cmd
    sink = open(stdout, "w") if stdout else subprocess.DEVNULL
    r = subprocess.run(full, env={**os.environ, **(env or {})}, cwd=cwd,
                       stdout=sink, stderr=subprocess.PIPE, text=True)
    if stdout:
        sink.close()
    if r.returncode not in (0, 3):  # 3: cairn committed with warnings
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
    wall, user, sys_, rss = out.read_text().split()[-4:]
    m = {"wall": float(wall), "cpu": float(user) + float(sys_), "rss_mb": int(rss) / 1024}
    # cairn logs what each S3 store cost when it is dropped (JSON lines on a non-terminal): one
    # line per store (the repository's and the exports'), summed here; a field an older cairn
    # does not log counts 0. `copies` (UploadPartCopy) are counted in `puts` too.
    for line in r.stderr.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and ev.get("message") == "S3 requests made":
            for k in S3_COUNTS:
                m[k] = m.get(k, 0) + int(ev.get(k) or 0)
    return m


def du(path):
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def local_cairn(base, corpus, source_extra="", extra=""):
    """cairn's config in `base`, backing up `corpus` into a local store, exports and state there
    (`source_extra`: more lines of `[source]`; `extra`: more sections); returns its environment."""
    cfg = base / "cairn.toml"
    cfg.write_text(f'[source]\nroot = "{corpus}"\n{source_extra}[store]\npath = "{base}/store"\n'
                   f'[exports]\npath = "{base}/exports"\n[state]\ndir = "{base}/state"\n{extra}')
    return {"CAIRN_CONFIG": str(cfg)}


def fresh_corpus(work, name):
    """A fresh copy of the pristine corpus, holes kept, at `work/name`."""
    corpus = work / name
    shutil.rmtree(corpus, ignore_errors=True)
    sh(["cp", "-a", "--sparse=always", str(work / "pristine"), str(corpus)])
    return corpus


def one_round(cairn, work, rnd):
    corpus = fresh_corpus(work, "corpus")
    for d in ["repo-restic", "repo-borg", "cairn", "restore"]:
        shutil.rmtree(work / d, ignore_errors=True)
    (work / "cairn").mkdir()
    cenv = local_cairn(work / "cairn", corpus)
    renv = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "repo-restic"), "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    benv = {"BORG_PASSPHRASE": "", "BORG_REPO": str(work / "repo-borg"), "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_BASE_DIR": str(work / "borg-base")}
    paths = [str(corpus / f) for f in FOLDERS]
    r = {}
    sh(["restic", "init", "-q"], env={**os.environ, **renv}, stdout=subprocess.DEVNULL)
    sh(["borg", "init", "-e", "none"], env={**os.environ, **benv})
    sh([str(cairn), "-q", "init"], env={**os.environ, **cenv})

    repos = {"restic": [work / "repo-restic", work / "restic-cache"], "borg": [work / "repo-borg", work / "borg-base"],
             "cairn": [work / "cairn/store", work / "cairn/state", work / "cairn/exports"]}

    def restic():
        settle(corpus, *repos["restic"])
        return measure(["restic", "-q", "backup", "--host", "bench"] + paths, renv)

    def borg(name):
        settle(corpus, *repos["borg"])
        return measure(["borg", "create", "--compression", "zstd,3", f"::{name}"] + paths, benv)

    def cairn_do(*a):
        settle(corpus, *repos["cairn"])
        return measure([str(cairn), "-q"] + list(a), cenv)

    def tar_zstd(out):
        settle(corpus)
        return measure(["sh", "-c", f"tar -cf - -C {corpus} {' '.join(FOLDERS)} | zstd -3 -T2 -q -f -o {out}"])

    r["full/restic"] = restic()
    r["rerun/restic"] = restic()
    r["full/borg"] = borg("d1")
    r["rerun/borg"] = borg("d1b")
    r["full/cairn"] = cairn_do("backup", "--date", "2026-11-29")
    r["rerun/cairn"] = cairn_do("backup", "--date", "2026-11-29")
    r["export/cairn"] = cairn_do("export", "--date", "2026-11-29")
    r["export/tar"] = tar_zstd(work / "ref1.tar.zst")
    r["export/floor"] = floor_row(export_floor(work / "cairn" / "exports", "2026-11-29", work))
    apply_changes(corpus, random.Random(rnd))
    r["changes/restic"] = restic()
    r["changes/borg"] = borg("d2")
    r["changes/cairn"] = cairn_do("backup", "--date", "2026-11-30")
    r["export2/cairn"] = cairn_do("export", "--date", "2026-11-30")
    r["export2/tar"] = tar_zstd(work / "ref2.tar.zst")
    r["export2/floor"] = floor_row(export_floor(work / "cairn" / "exports", "2026-11-30", work, "2026-11-29"))
    sizes = {
        "repo/restic": du(work / "repo-restic"), "repo/borg": du(work / "repo-borg"), "repo/cairn": du(work / "cairn/store"),
        "archive/cairn": du(work / "cairn/exports/2026-11-30") , "archive/tar": du(work / "ref2.tar.zst"),
        "corpus": du(corpus),
    }
    for tool, cmd, env in [
        ("restic", ["restic", "-q", "restore", "latest", "--target", str(work / "restore/restic")], renv),
        ("borg", ["sh", "-c", f"mkdir -p {work}/restore/borg && cd {work}/restore/borg && borg extract ::d2"], benv),
        ("cairn", [str(cairn), "-q", "restore", "--target", str(work / "restore/cairn")], cenv),
    ]:
        settle(*repos[tool])
        r[f"restore/{tool}"] = measure(cmd, env)
        shutil.rmtree(work / "restore", ignore_errors=True)
    return r, sizes


def s3_server(work):
    """Garage on loopback (scripts/s3-server.sh), its data under the bench's work directory."""
    env = {**os.environ, "CAIRN_S3_DIR": str(work / "garage")}
    sh([str(ROOT / "scripts/s3-server.sh"), "start"], env=env)
    out = subprocess.run([str(ROOT / "scripts/s3-server.sh"), "env"], env=env, capture_output=True,
                         text=True, check=True).stdout
    s3 = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)
    s3["CAIRN_S3_DIR"] = str(work / "garage")
    return s3


def link_arg(text):
    """`--link RATE,LATENCY`: MB/s each way and one-way milliseconds."""
    try:
        rate, latency = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected RATE,LATENCY in MB/s and ms, e.g. 117,2") from None
    if rate <= 0 or latency < 0:
        raise argparse.ArgumentTypeError("the rate must be above 0 and the latency at least 0")
    return rate, latency


def fmt_num(x):
    """117.0 -> '117', 2.5 -> '2.5' (for link-proxy's arguments and the report)."""
    return f"{x:g}"


def start_link_proxy(binary, endpoint, rate, latency):
    """`link-proxy` on a free loopback port in front of the S3 server at `endpoint`, each
    direction capped at `rate` MB/s and delayed by `latency` ms. Returns the process and the
    endpoint to use instead of `endpoint`, once it has said `ready`."""
    upstream = urllib.parse.urlsplit(endpoint).netloc
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(binary), f"127.0.0.1:{port}", upstream, fmt_num(rate), fmt_num(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = ""
    if select.select([proc.stdout], [], [], 30)[0]:
        line = proc.stdout.readline().strip()
    if line != "ready":
        stop_process(proc)
        sys.exit(f"link-proxy did not start on 127.0.0.1:{port} (said {line!r}, exit {proc.returncode})")
    print(f"link-proxy: 127.0.0.1:{port} -> {upstream}, {fmt_num(rate)} MB/s each way, {fmt_num(latency)} ms one way",
          file=sys.stderr)
    return proc, f"http://127.0.0.1:{port}"


def stop_process(proc):
    """Ends a process this script started (by its own handle) and reaps it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def s3_cairn(s3, base, corpus, prefix):
    """cairn's config in `base` with its store and exports on the Garage server under `prefix`:
    the S3 credentials, and cairn's environment (which logs its S3 requests and bytes)."""
    ep = s3["CAIRN_S3_TEST_ENDPOINT"]
    cfg = base / "cairn.toml"
    cfg.write_text(
        f'[source]\nroot = "{corpus}"\n'
        f'[store]\nkind = "s3"\nendpoint = "{ep}"\nregion = "garage"\nbucket = "cairn-store"\nprefix = "{prefix}"\n'
        f'[exports]\nkind = "s3"\nendpoint = "{ep}"\nregion = "garage"\nbucket = "cairn-exports"\nprefix = "{prefix}"\n'
        f'[state]\ndir = "{base}/state"\n')
    creds = {"AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
             "AWS_DEFAULT_REGION": "garage", "AWS_REGION": "garage"}
    return creds, {**creds, "CAIRN_CONFIG": str(cfg), "CAIRN_LOG": "error,cairn_engine::store::s3=debug"}


def one_round_s3(cairn, work, rnd, s3, s3_floor):
    """The same operations with every repository and the exports on the Garage server, beside
    restic on the same server and the plan's `tar | zstd -3 -T2 | aws s3 cp -`, and each
    export's read-back floor by `s3_floor`. Every client talks to s3["CAIRN_S3_TEST_ENDPOINT"]
    (link-proxy's address with --link)."""
    corpus = fresh_corpus(work, "corpus")
    for d in ["cairn-s3", "restore", "restic-cache"]:
        shutil.rmtree(work / d, ignore_errors=True)
    (work / "cairn-s3").mkdir()
    ep = s3["CAIRN_S3_TEST_ENDPOINT"]
    creds, cenv = s3_cairn(s3, work / "cairn-s3", corpus, f"bench-{rnd}")
    renv = {**creds, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": f"s3:{ep}/cairn-store/restic-{rnd}",
            "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    region = ["-o", "s3.region=garage"]
    aenv = {k: v for k, v in creds.items()}
    garage = work / "garage"
    paths = [str(corpus / f) for f in FOLDERS]

    def measure_s3(cmd, env=None, stdout=None):
        # The server shares the machine's cores: its CPU seconds during the command are part
        # of what an operation costs on loopback.
        before = server_cpu(garage)
        m = measure(cmd, env, stdout=stdout)
        m["server_cpu"] = server_cpu(garage) - before
        return m

    r = {}
    sh(["restic", "init", "-q"] + region, env={**os.environ, **renv}, stdout=subprocess.DEVNULL)
    sh([str(cairn), "-q", "init"], env={**os.environ, **cenv})

    def restic():
        settle(corpus, garage)
        return measure_s3(["restic", "-q", "backup", "--host", "bench"] + region + paths, renv)

    def cairn_do(*a):
        settle(corpus, garage)
        return measure_s3([str(cairn), "-q"] + list(a), cenv)

    def pipeline(name):
        settle(corpus, garage)
        return measure_s3(["sh", "-c", f"tar -cf - -C {corpus} {' '.join(FOLDERS)} | zstd -3 -T2 -q | "
                        f"aws s3 cp - s3://cairn-exports/tar-{rnd}/{name} --endpoint-url {ep} --only-show-errors"],
                       aenv)

    def floor(date):
        # The floor of an export on S3: its .sha256 covers every byte, so every byte of the
        # archive just written is read from the server once, here with cairn's own read plan.
        settle(garage)
        out = work / "s3-floor.json"
        m = measure_s3([str(s3_floor), ep, "cairn-exports", f"bench-{rnd}/{date}/shared-{date}.tar.zst"], creds,
                    stdout=out)
        f = json.loads(out.read_text().strip().splitlines()[-1])
        m.update({"requests": int(f["requests"]), "bytes_read": int(f["bytes_read"]), "bytes": int(f["bytes"]),
                  "sha256": f["sha256"], "seconds": float(f["seconds"])})
        return m

    r["full/restic"] = restic()
    r["rerun/restic"] = restic()
    r["full/cairn"] = cairn_do("backup", "--date", "2026-11-29")
    r["rerun/cairn"] = cairn_do("backup", "--date", "2026-11-29")
    r["export/cairn"] = cairn_do("export", "--date", "2026-11-29")
    r["export/floor"] = floor("2026-11-29")
    r["export/pipeline"] = pipeline("day1.tar.zst")
    apply_changes(corpus, random.Random(rnd))
    r["changes/restic"] = restic()
    r["changes/cairn"] = cairn_do("backup", "--date", "2026-11-30")
    r["export2/cairn"] = cairn_do("export", "--date", "2026-11-30")
    r["export2/floor"] = floor("2026-11-30")
    r["export2/pipeline"] = pipeline("day2.tar.zst")
    # The same read by the aws CLI (the floor of earlier runs), kept for comparison: not the floor.
    settle(garage)
    r["export2/aws-read+sha256"] = measure_s3(
        ["sh", "-c", f"aws s3 cp s3://cairn-exports/bench-{rnd}/2026-11-30/shared-2026-11-30.tar.zst - "
         f"--endpoint-url {ep} --only-show-errors | sha256sum"], aenv)
    sizes = {"corpus": du(corpus), "archive1": r["export/floor"]["bytes"], "archive2": r["export2/floor"]["bytes"]}
    for tool, cmd, env in [
        ("restic", ["restic", "-q", "restore", "latest", "--target", str(work / "restore/restic")] + region, renv),
        ("cairn", [str(cairn), "-q", "restore", "--target", str(work / "restore/cairn")], cenv),
    ]:
        settle(garage)
        r[f"restore/{tool}"] = measure_s3(cmd, env)
        shutil.rmtree(work / "restore", ignore_errors=True)
    return r, sizes


def server_cpu(garage):
    """CPU seconds (user + system) the Garage process under `garage` has used so far."""
    pid = (garage / "pid").read_text().strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report_s3(rounds, sizes, link=None):
    """The S3 mode's table and goals; `link` is (MB/s, ms) when the round ran through
    link-proxy, None on plain loopback."""
    profile = (f"a Pi-like link through link-proxy, {fmt_num(link[0])} MB/s each way and {fmt_num(link[1])} ms one way"
               if link else "loopback (no link shaping)")
    archives = ", ".join(f"{label} {sizes[k] / 1e9:.2f} GB" for label, k in [("day 1", "archive1"), ("day 2", "archive2")]
                         if k in sizes)
    lines = [f"S3 mode, Garage on loopback; profile: {profile}. Rounds: {len(rounds)} (medians). "
             f"Corpus: {sizes['corpus'] / 1e9:.2f} GB." + (f" Archives: {archives}." if archives else ""), "",
             "| operation | tool | wall s | CPU s | server CPU s | peak RSS MiB | requests | GETs | PUTs | HEADs | "
             "copies | MB down | MB up | MB copied |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    count, mb = (lambda v: f"{int(v):,}"), (lambda v: f"{v / 1e6:,.1f}")
    cols = [("requests", count), ("gets", count), ("puts", count), ("heads", count), ("copies", count),
            ("bytes_read", mb), ("bytes_written", mb), ("bytes_copied", mb)]
    for k in rounds[0]:
        op, tool = k.split("/", 1)
        last = rounds[-1][k]
        extra = " | ".join(fmt(last[f]) if f in last else "—" for f, fmt in cols)
        server = (f"{median_of(rounds, k, 'server_cpu'):.2f}" if all("server_cpu" in r[k] for r in rounds)
                  else "—")
        lines.append(f"| {op} | {tool} | {median_of(rounds, k, 'wall'):.2f} | {median_of(rounds, k, 'cpu'):.2f} | "
                     f"{server} | {median_of(rounds, k, 'rss_mb'):.0f} | {extra} |")
    lines += ["", "(requests and bytes: cairn's own count of its S3 requests, its two stores summed, and s3-floor's "
                  "(requests and MB down only); last round. copies: UploadPartCopy requests, also counted in PUTs; "
                  "MB copied: bytes copied inside the server. floor: s3-floor reading the archive just written by "
                  "8 MiB ranged GETs, 8 in flight, into SHA-256. server CPU: Garage's user + system seconds during the "
                  "operation, on the same two cores.)"]

    def med(key, field="wall"):
        return median_of(rounds, key, field)

    def ratio(a, b, field="wall"):
        return med(a, field) / med(b, field)

    def export_rss():
        return (max(med(k, "rss_mb") for k in ("export/cairn", "export2/cairn") if k in rounds[0])
                / max(med(k, "rss_mb") for k in rounds[0] if k.endswith("/restic")))

    restore = ("full restore, cairn / restic", lambda: ratio("restore/cairn", "restore/restic"), 0.6)
    loopback = [
        ("next day's export / its floor (s3-floor)", lambda: ratio("export2/cairn", "export2/floor"), 1.2),
        ("next day's export / tar | zstd | aws s3 cp", lambda: ratio("export2/cairn", "export2/pipeline"), 0.35),
        ("first export / tar | zstd | aws s3 cp", lambda: ratio("export/cairn", "export/pipeline"), 0.6),
        restore,
        ("full backup, cairn / restic", lambda: ratio("full/cairn", "full/restic"), 0.4),
        ("no-change rerun, cairn / restic", lambda: ratio("rerun/cairn", "rerun/restic"), 0.12),
        ("one day of changes, cairn / restic", lambda: ratio("changes/cairn", "changes/restic"), 0.15),
        ("exports' peak RSS (the larger of the two) / restic's worst operation's", export_rss, 1.0),
    ]

    def table(goals):
        out = ["| goal | ratio | target | met |", "| --- | ---: | ---: | :-: |"]
        for name, value, target in goals:
            try:
                v = value()
            except (KeyError, ValueError, ZeroDivisionError, statistics.StatisticsError):
                continue  # a row this run did not measure
            out.append(f"| {name.replace('|', chr(92) + '|')} | {v:.3f} | ≤ {target} | {'yes' if v <= target else 'no'} |")
        return out

    if not link:
        lines += ["", "Goals (loopback profile):", ""] + table(loopback)
        return "\n".join(lines)
    rate = link[0] * 1e6

    def link_floor(key):
        # The link's floor of an export: its archive's bytes at the link's rate.
        return med(key, "bytes") / rate

    linked = [
        ("next day's export / the link's floor (archive bytes at the link's rate)",
         lambda: med("export2/cairn") / link_floor("export2/floor"), 1.1),
        ("next day's export / tar | zstd | aws s3 cp", lambda: ratio("export2/cairn", "export2/pipeline"), 1.0),
        ("first export: MB uploaded (both stores) / archive", lambda: med("export/cairn", "bytes_written")
         / med("export/floor", "bytes"), 0.30),
        ("first export / the link's floor", lambda: med("export/cairn") / link_floor("export/floor"), 1.2),
        restore,
    ]
    floors = ", ".join(f"{label} {link_floor(k):.2f} s" for label, k in [("day 1", "export/floor"), ("day 2", "export2/floor")]
                       if k in rounds[0])
    if floors:
        lines += ["", f"Link floors (archive bytes at {fmt_num(link[0])} MB/s): {floors}."]
    lines += ["", "Goals (link profile):", ""] + table(linked)
    lines += ["", "The loopback profile's goals, computed on this link for reference (their targets are set for "
                  "loopback):", ""] + table([g for g in loopback if g is not restore])
    return "\n".join(lines)


def scale_run(cairn, work, files):
    """Many small files: no-change rerun time and peak RSS, cairn vs restic."""
    corpus = work / "scale"
    make_tiny_files(corpus, files)
    for d in ["scale-cairn", "scale-restic"]:
        shutil.rmtree(work / d, ignore_errors=True)
    (work / "scale-cairn").mkdir()
    cfg = work / "scale-cairn" / "cairn.toml"
    cfg.write_text(f'[source]\nroot = "{corpus}"\nfolders = ["notetaking"]\n[store]\npath = "{work}/scale-cairn/store"\n'
                   f'[state]\ndir = "{work}/scale-cairn/state"\n')
    cenv = {"CAIRN_CONFIG": str(cfg)}
    renv = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "scale-restic"), "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    sh(["restic", "init", "-q"], env={**os.environ, **renv}, stdout=subprocess.DEVNULL)
    sh([str(cairn), "-q", "init"], env={**os.environ, **cenv})
    r = {}
    # Only the repositories are read back into the page cache: reading a million small files
    # takes longer than the runs, and the directory entries and inodes stay cached anyway.
    crepo, rrepo = [work / "scale-cairn"], [work / "scale-restic", work / "restic-cache"]
    settle(*crepo)
    r["scale-full/cairn"] = measure([str(cairn), "-q", "backup"], cenv)
    settle(*crepo)
    r["scale-rerun/cairn"] = measure([str(cairn), "-q", "backup"], cenv)
    settle(*rrepo)
    r["scale-full/restic"] = measure(["restic", "-q", "backup", "--host", "bench", str(corpus / "notetaking")], renv)
    settle(*rrepo)
    r["scale-rerun/restic"] = measure(["restic", "-q", "backup", "--host", "bench", str(corpus / "notetaking")], renv)
    return r


def apply_day(corpus, rng, day):
    """Day `day` of a fortnight: notes edited, eight new photos, the photos of three days before
    deleted (so that forgotten snapshots leave dead data), a log appended, 1 MiB of the disk image
    rewritten."""
    notes = sorted(p for p in (corpus / "notetaking").rglob("*") if p.is_file())
    for p in notes[day::97]:
        with open(p, "a") as f:
            f.write(f"\nedited on day {day}\n")
    d = corpus / "images" / f"day-{day:02}"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        camera_file(d / f"IMG_D{day:02}{i:03}.JPG", 4 << 20, rng)
    shutil.rmtree(corpus / "images" / f"day-{day - 3:02}", ignore_errors=True)
    with open(corpus / "backup" / "app.log", "a") as f:
        for i in range(20_000):
            f.write(f"2026-11-{day:02}T01:{i % 60:02}:00Z INFO job=nightly file={i} status=ok\n")
    with open(corpus / "backup" / "disk.img", "r+b") as f:
        f.seek((day * 37 % 1024) << 20)
        f.write(rng.randbytes(1 << 20))


def gc_run(cairn, work, days=14, keep=7):
    """Fourteen simulated days backed up by every tool, then the same keep rule (the newest
    snapshot of each of the `keep` newest days) and the removal of what no kept snapshot needs:
    `cairn prune` (forget + gc, grace 0 so that it deletes in the same run, as the others do)
    beside `restic forget --prune` and `borg prune` + `borg compact`."""
    corpus = fresh_corpus(work, "corpus-gc")
    for d in ["gc-restic", "gc-borg", "gc-cairn"]:
        shutil.rmtree(work / d, ignore_errors=True)
    (work / "gc-cairn").mkdir()
    cenv = local_cairn(work / "gc-cairn", corpus,
                       extra=f'[retention]\nkeep_daily = {keep}\n[gc]\ngrace = "0h"\nunsafe_short_grace = true\n')
    renv = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "gc-restic"),
            "RESTIC_CACHE_DIR": str(work / "restic-cache-gc")}
    benv = {"BORG_PASSPHRASE": "", "BORG_REPO": str(work / "gc-borg"), "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_BASE_DIR": str(work / "borg-base-gc")}
    paths = [str(corpus / f) for f in FOLDERS]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sh(["restic", "init", "-q"], env={**os.environ, **renv}, **quiet)
    sh(["borg", "init", "-e", "none"], env={**os.environ, **benv}, **quiet)
    sh([str(cairn), "-q", "init"], env={**os.environ, **cenv})
    rng = random.Random(14)
    for day in range(1, days + 1):
        print(f"gc bench: day {day}/{days}", file=sys.stderr)
        if day > 1:
            apply_day(corpus, rng, day)
        date = f"2026-11-{day:02}"
        subprocess.run([str(cairn), "-q", "backup", "--date", date], env={**os.environ, **cenv}, check=False)
        sh(["restic", "-q", "backup", "--host", "bench", "--time", f"{date} 02:00:00"] + paths,
           env={**os.environ, **renv}, **quiet)
        sh(["borg", "create", "--compression", "zstd,3", "--timestamp", f"{date}T02:00:00", f"::d{day:02}"] + paths,
           env={**os.environ, **benv}, **quiet)
    sizes = {f"before/{t}": du(work / d) for t, d in [("cairn", "gc-cairn/store"), ("restic", "gc-restic"), ("borg", "gc-borg")]}
    r = {}
    settle(work / "gc-cairn/store", work / "gc-cairn/state")
    r["gc/cairn"] = measure([str(cairn), "-q", "prune"], cenv)
    settle(work / "gc-restic", work / "restic-cache-gc")
    r["gc/restic"] = measure(["restic", "-q", "forget", "--keep-daily", str(keep), "--prune"], renv)
    settle(work / "gc-borg", work / "borg-base-gc")
    r["gc/borg"] = measure(["sh", "-c", f"borg prune --keep-daily {keep} && borg compact"], benv)
    sizes.update({f"after/{t}": du(work / d) for t, d in [("cairn", "gc-cairn/store"), ("restic", "gc-restic"), ("borg", "gc-borg")]})
    # The cost of the default grace: the next night's gc deletes what this one condemned.
    return r, sizes


def scale_gc(cairn, work):
    """gc of the 1,000,000-file repository beside `restic prune` (nothing to delete: both walk
    every tree of every snapshot)."""
    cenv = {"CAIRN_CONFIG": str(work / "scale-cairn" / "cairn.toml")}
    renv = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "scale-restic"), "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    r = {}
    # Unmeasured: a repository made by an older cairn gets its catalog's pack index once.
    sh([str(cairn), "-q", "backup"], env={**os.environ, **cenv})
    settle(work / "scale-cairn")
    r["scale-gc/cairn"] = measure([str(cairn), "-q", "gc", "--set", "gc.grace=0h", "--set", "gc.unsafe_short_grace=true"], cenv)
    settle(work / "scale-restic", work / "restic-cache")
    r["scale-gc/restic"] = measure(["restic", "-q", "prune"], renv)
    return r


def report_gc(r, sizes, scale):
    lines = ["| operation | tool | wall s | CPU s | peak RSS MiB |", "| --- | --- | ---: | ---: | ---: |"]
    for k, v in {**r, **(scale or {})}.items():
        op, tool = k.split("/")
        lines.append(f"| {op} | {tool} | {v['wall']:.2f} | {v['cpu']:.2f} | {v['rss_mb']:.0f} |")
    lines += ["", "| repository | before | after |", "| --- | ---: | ---: |"]
    for t in ["cairn", "restic", "borg"]:
        lines.append(f"| {t} | {sizes['before/' + t]:,} | {sizes['after/' + t]:,} |")
    goals = [("gc wall, cairn / restic", r["gc/cairn"]["wall"] / r["gc/restic"]["wall"], 0.5),
             ("gc peak RSS, cairn / restic", r["gc/cairn"]["rss_mb"] / r["gc/restic"]["rss_mb"], 1.0)]
    if scale:
        goals.append(("1M-file gc peak RSS, cairn / restic",
                      scale["scale-gc/cairn"]["rss_mb"] / scale["scale-gc/restic"]["rss_mb"], 0.5))
    lines += ["", "| goal | ratio | target | met |", "| --- | ---: | ---: | :-: |"]
    for name, value, target in goals:
        lines.append(f"| {name} | {value:.3f} | ≤ {target} | {'yes' if value <= target else 'no'} |")
    return "\n".join(lines)


def offsite_run(cairn, work, rounds=3):
    """The offsite stage's cost: one day of the bench's exports (a 1.9 GB archive and its
    companions) through `cairn offsite sync` with the rclone uploader to a local remote, beside
    `rclone copy` of the same day alone. Needs the day that a full bench run exported."""
    day = "2026-11-29"
    src = work / "cairn" / "exports" / day
    if not (src / f"shared-{day}.manifest.json").exists():
        sys.exit(f"no exported day at {src}: run benches/compare.py without --offsite first")
    base = work / "offsite"
    shutil.rmtree(base, ignore_errors=True)
    (base / "exports" / day).mkdir(parents=True)
    for f in src.iterdir():
        os.link(f, base / "exports" / day / f.name)
    cenv = local_cairn(base, base, extra=f'[offsite]\nuploader = "rclone"\nremote = ":local:{base}/remote-cairn"\n')
    r = []
    for i in range(rounds):
        for d in ["remote-cairn", "remote-rclone", "exports/_offsite", "exports/_reports"]:
            shutil.rmtree(base / d, ignore_errors=True)
        m = {}
        settle(base / "exports")
        m["offsite/cairn"] = measure([str(cairn), "-q", "offsite", "sync"], cenv)
        settle(base / "exports")
        m["offsite/rclone"] = measure(["rclone", "copy", str(base / "exports" / day), str(base / "remote-rclone" / day)])
        r.append(m)
    size = sum(f.stat().st_size for f in (base / "exports" / day).iterdir())
    lines = [f"One day, {size / 1e9:.2f} GB, {rounds} rounds (medians).", "",
             "| operation | tool | wall s | CPU s | peak RSS MiB |", "| --- | --- | ---: | ---: | ---: |"]
    for k in r[0]:
        op, tool = k.split("/")
        lines.append(f"| {op} | {tool} | {median_of(r, k, 'wall'):.2f} | {median_of(r, k, 'cpu'):.2f} | "
                     f"{median_of(r, k, 'rss_mb'):.0f} |")
    ratio = median_of(r, "offsite/cairn", "wall") / median_of(r, "offsite/rclone", "wall")
    lines += ["", "| goal | ratio | target | met |", "| --- | ---: | ---: | :-: |",
              f"| offsite upload, cairn / rclone copy | {ratio:.3f} | ≤ 1.1 | {'yes' if ratio <= 1.1 else 'no'} |"]
    return r, "\n".join(lines)


def seek_run(cairn, work, rounds=3, extra_mb=200):
    """One file out of a day's archive on the Garage server: a ~10 KB note and a 50 MB file by
    `cairn exports cat` (seek table, ranged reads), beside `cairn restore --archive` of the whole
    day and `aws s3 cp - | zstd -d | tar -x PATH`. The corpus gets 50 MB and 200 MB of
    incompressible files so that the archive exceeds 2 GB."""
    corpus = fresh_corpus(work, "corpus-seek")
    rng = random.Random(16)
    (corpus / "images" / "video").mkdir(parents=True, exist_ok=True)
    (corpus / "images" / "video" / "clip-50mb.mov").write_bytes(rng.randbytes(50 << 20))
    with open(corpus / "backup" / "vm-disk.qcow2", "wb") as f:
        for _ in range(extra_mb // 100):
            f.write(rng.randbytes(100 << 20))
    notes = sorted(p for p in (corpus / "notetaking").rglob("*") if p.is_file() and 8_000 <= p.stat().st_size <= 12_000)
    note = notes[len(notes) // 2].relative_to(corpus).as_posix()
    big = "images/video/clip-50mb.mov"
    s3 = s3_server(work)
    try:
        ep = s3["CAIRN_S3_TEST_ENDPOINT"]
        base = work / "cairn-seek"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
        creds, cenv = s3_cairn(s3, base, corpus, "seek")
        sh([str(cairn), "-q", "init"], env={**os.environ, **cenv})
        sh([str(cairn), "-q", "run", "--date", "2026-11-29"], env={**os.environ, **cenv})
        key = "seek/2026-11-29/shared-2026-11-29.tar.zst"
        out = subprocess.run(["aws", "s3api", "head-object", "--bucket", "cairn-exports", "--key", key,
                              "--endpoint-url", ep], env={**os.environ, **creds}, capture_output=True, text=True, check=True)
        size = json.loads(out.stdout)["ContentLength"]
        garage = work / "garage"
        r = []
        for _ in range(rounds):
            m = {}
            for label, path in [("note", note), ("50MB", big)]:
                settle(garage)
                m[f"{label}/cairn cat"] = measure(["sh", "-c", f"{cairn} -q exports cat 2026-11-29 {path} > /dev/null"], cenv)
                settle(garage)
                target = work / "seek-restore"
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()
                m[f"{label}/aws|zstd|tar"] = measure(["sh", "-c",
                    f"aws s3 cp s3://cairn-exports/{key} - --endpoint-url {ep} --only-show-errors | zstd -dq | tar -xf - -C {target} {path}"],
                    creds)
            settle(garage)
            target = work / "seek-restore"
            shutil.rmtree(target, ignore_errors=True)
            m["whole/cairn restore --archive"] = measure([str(cairn), "-q", "restore", "--archive", "2026-11-29",
                                                         "--target", str(target)], cenv)
            shutil.rmtree(target, ignore_errors=True)
            r.append(m)
    finally:
        sh([str(ROOT / "scripts/s3-server.sh"), "stop"], env={**os.environ, "CAIRN_S3_DIR": s3["CAIRN_S3_DIR"]})
    lines = [f"Archive: {size / 1e9:.2f} GB on Garage; note {note}; {rounds} rounds (medians).", "",
             "| file | tool | wall s | bytes received | share of the archive |", "| --- | --- | ---: | ---: | ---: |"]
    for k in r[0]:
        label, tool = k.split("/", 1)
        got = statistics.median(x[k].get("bytes_read", 0) for x in r)
        share = f"{got / size * 100:.3f}%" if got else "—"
        lines.append(f"| {label} | {tool} | {median_of(r, k, 'wall'):.3f} | {int(got):,} | {share} |")
    whole = median_of(r, "whole/cairn restore --archive", "wall")
    goals = []
    for label in ["note", "50MB"]:
        got = statistics.median(x[f"{label}/cairn cat"].get("bytes_read", 0) for x in r)
        goals.append((f"{label}: bytes received / archive", got / size, 0.01))
        goals.append((f"{label}: time / whole-archive restore", median_of(r, f"{label}/cairn cat", "wall") / whole, 0.05))
    lines += ["", "| goal | ratio | target | met |", "| --- | ---: | ---: | :-: |"]
    for name, value, target in goals:
        lines.append(f"| {name} | {value:.4f} | ≤ {target} | {'yes' if value <= target else 'no'} |")
    return r, "\n".join(lines)


WORDS = ("note idea todo meeting plan draft read buy call write review fix the a of and to in for "
         "with on project garden recipe book travel budget list week monday friday later maybe done").split()


def make_tiny(corpus, files, per_folder=500, seed=17):
    """`files` notes of 10-400 bytes of words, `per_folder` to a folder under notetaking/."""
    marker = corpus / f".complete-{files}"
    if marker.exists():
        return
    shutil.rmtree(corpus, ignore_errors=True)
    rng = random.Random(seed)
    for f in range(files // per_folder):
        d = corpus / "notetaking" / f"folder-{f:04}"
        d.mkdir(parents=True)
        for n in range(per_folder):
            size = rng.randint(10, 400)
            text = []
            while sum(len(w) + 1 for w in text) < size:
                text.append(rng.choice(WORDS))
            (d / f"n{n:03}.md").write_text(" ".join(text)[:size] + "\n")
    marker.write_text("ok\n")


def tiny_day(corpus, files, spread, per_folder=500):
    """Appends a line to 1 % of the notes: whole folders one after another (a day's notes, how a
    notes app writes), or with `spread`, every 100th note of every folder (the worst case for
    reusing groups: every group holds a changed note). Returns a function that undoes it."""
    folders = sorted((corpus / "notetaking").iterdir())
    if spread:
        notes = [d / f"n{n:03}.md" for d in folders for n in range(0, per_folder, 100)]
    else:
        notes = [p for d in folders[:max(1, files // 100 // per_folder)] for p in sorted(d.iterdir())]
    before = {p: p.read_bytes() for p in notes}
    for p in notes:
        with open(p, "a") as f:
            f.write("appended the next day\n")

    def undo():
        for p, b in before.items():
            p.write_bytes(b)
    return undo


def export_floor(cairn_exports, date, work, before=None):
    """The floor of one export: SHA-256 of its archive, and zstd -3 of the bytes of its groups
    that were compressed rather than reused (from the manifest: all of them on a first export),
    both timed here; the CPU floor is their sum, the wall floor that over 2 cores, and never less
    than the SHA-256 alone (one stream)."""
    day = cairn_exports / date
    archive = day / f"shared-{date}.tar.zst"
    manifest = json.loads((day / f"shared-{date}.manifest.json").read_text())
    # Groups of the same recipe as one of the day before's were copied from its archive.
    kept = set()
    if before:
        kept = {g["recipe"] for g in json.loads(
            (cairn_exports / before / f"shared-{before}.manifest.json").read_text())["groups"]}
    settle(archive)
    # OpenSSL's SHA-256 uses the CPU's SHA extensions as cairn does (coreutils' sha256sum here
    # does not: 3.5 s against 1.1 s for 1.9 GB).
    sha = measure(["openssl", "dgst", "-sha256", str(archive)] if shutil.which("openssl")
                  else ["sha256sum", str(archive)])
    groups = work / "floor-groups.tar"
    with open(archive, "rb") as a, open(groups, "wb") as out:
        for g in (g for g in manifest["groups"] if g["recipe"] not in kept):
            a.seek(g["offset"])
            out.write(subprocess.run(["zstd", "-dc"], input=a.read(g["length"]), capture_output=True, check=True).stdout)
    settle(groups)
    comp = measure(["zstd", "-3", "-T1", "-q", "-f", "-o", "/dev/null", str(groups)])
    groups.unlink()
    return {"sha256": sha["wall"], "compress": comp["cpu"]}


def floor_row(f):
    """An export's floor as a row of the results: wall = the SHA-256 of the archive or the
    SHA-256 and the compression of what was not reused over 2 cores, whichever is longer; CPU =
    both; `sha256` = the SHA-256 alone."""
    return {"wall": max(f["sha256"], (f["sha256"] + f["compress"]) / 2), "cpu": f["sha256"] + f["compress"],
            "rss_mb": 0, "sha256": f["sha256"]}


def median_run(runs):
    """The run of median wall time among `runs`."""
    return sorted(runs, key=lambda m: m["wall"])[len(runs) // 2]


def tiny_run(cairn, work, files, rounds=3):
    """A share of tiny notes and nothing else: cairn's first backup beside restic's, the daily
    export beside `tar | zstd`, then a day of appends in whole folders and a day of appends
    spread over every folder, each exported beside `tar | zstd` again."""
    corpus = work / f"tiny-{files}"
    make_tiny(corpus, files)
    base = work / f"tiny-{files}-cairn"
    for d in [base, work / "tiny-restic"]:
        shutil.rmtree(d, ignore_errors=True)
    base.mkdir()
    cenv = local_cairn(base, corpus, 'folders = ["notetaking"]\n')
    renv = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(work / "tiny-restic"), "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    sh([str(cairn), "-q", "init"], env={**os.environ, **cenv})
    sh(["restic", "init", "-q"], env={**os.environ, **renv}, stdout=subprocess.DEVNULL)
    r, sizes, floors = {}, {}, {}

    def cairn_do(*a, stdout=None):
        # The notes too, as for restic: a backup reads them (an export never does).
        settle(*([corpus] if a[0] == "backup" else []), base / "store", base / "state", base / "exports")
        return measure([str(cairn), "-q"] + list(a), cenv, stdout=stdout)

    def tar_zstd(out):
        settle(corpus)
        return measure(["sh", "-c", f"tar -cf - -C {corpus} notetaking | zstd -3 -T2 -q -f -o {out}"])

    settle(corpus)
    r["full/restic"] = measure(["restic", "-q", "backup", "--host", "bench", str(corpus / "notetaking")], renv)
    undos, before = [], None
    for day, change in [("2026-11-29", None), ("2026-11-30", "folders"), ("2026-12-01", "spread")]:
        if change:
            undos.append(tiny_day(corpus, files, spread=change == "spread"))
        op = {None: "", "folders": "-folders", "spread": "-spread"}[change]
        r[f"backup{op}/cairn"] = cairn_do("backup", "--date", day)
        # Each export `rounds` times, the day written afresh (drawing on the same day before),
        # and the median kept: this VM's timings vary by 15 % from run to run.
        exports = []
        for k in range(rounds):
            shutil.rmtree(base / "exports" / day, ignore_errors=True)
            exports.append(cairn_do("export", "--json", "--date", day, stdout=work / "tiny-export.json"))
        r[f"export{op}/cairn"] = median_run(exports)
        r[f"export{op}/tar"] = median_run([tar_zstd(work / "tiny-ref.tar.zst") for _ in range(rounds)])
        sizes[f"archive{op}/cairn"] = (base / "exports" / day / f"shared-{day}.tar.zst").stat().st_size
        sizes[f"archive{op}/tar"] = (work / "tiny-ref.tar.zst").stat().st_size
        sizes[f"manifest{op}/cairn"] = (base / "exports" / day / f"shared-{day}.manifest.json").stat().st_size
        floors[f"export{op}"] = export_floor(base / "exports", day, work, before)
        before = day
        floors[f"export{op}"]["reused"] = json.loads((work / "tiny-export.json").read_text()).get("reused")
    for undo in reversed(undos):
        undo()
    return r, sizes, floors


def report_tiny(runs):
    lines = []
    goals = []
    for files, (r, sizes, floors) in runs.items():
        lines += [f"{files:,} tiny files:", "", "| operation | tool | wall s | CPU s | peak RSS MiB |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for k, v in r.items():
            op, tool = k.split("/")
            lines.append(f"| {op} | {tool} | {v['wall']:.2f} | {v['cpu']:.2f} | {v['rss_mb']:.0f} |")
        lines += ["", "| export | archive, cairn | archive, tar \\| zstd | manifest | groups reused | SHA-256 s | compress s | wall floor s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for op in ["export", "export-folders", "export-spread"]:
            f = floors[op]
            wall_floor = max(f["sha256"], (f["sha256"] + f["compress"]) / 2)
            f["wall_floor"] = wall_floor
            sfx = op[len("export"):]
            ru = f.get("reused") or {}
            reused = f"{ru.get('reused_groups', 0):,} of {ru.get('groups', 0):,}" if ru else "—"
            lines.append(f"| {op} | {sizes['archive' + sfx + '/cairn']:,} | {sizes['archive' + sfx + '/tar']:,} | "
                         f"{sizes['manifest' + sfx + '/cairn']:,} | {reused} | {f['sha256']:.3f} | {f['compress']:.3f} | {wall_floor:.3f} |")
        lines.append("")
        n = f"{files:,} files"
        goals += [
            (f"{n}: daily export / tar | zstd", r["export/cairn"]["wall"] / r["export/tar"]["wall"], 0.5),
            (f"{n}: next day's export (whole folders) / tar | zstd",
             r["export-folders/cairn"]["wall"] / r["export-folders/tar"]["wall"], 0.3),
            (f"{n}: next day's export (spread) / tar | zstd",
             r["export-spread/cairn"]["wall"] / r["export-spread/tar"]["wall"], 0.3),
            (f"{n}: archive size / tar | zstd", sizes["archive-folders/cairn"] / sizes["archive-folders/tar"], 1.05),
        ]
        if files >= 1_000_000:
            goals += [(f"{n}: full first backup / restic", r["backup/cairn"]["wall"] / r["full/restic"]["wall"], 0.5),
                      (f"{n}: peak RSS of any cairn step, MiB / 256",
                       max(v["rss_mb"] for k, v in r.items() if k.endswith("/cairn")) / 256, 1.0)]
    lines += ["| goal | ratio | target | met |", "| --- | ---: | ---: | :-: |"]
    for name, value, target in goals:
        lines.append(f"| {name.replace('|', chr(92) + '|')} | {value:.3f} | ≤ {target} | {'yes' if value <= target else 'no'} |")
    return "\n".join(lines)


MOUNT_DAY = "2026-12-01"
MOUNT_BIG = "images/video/clip-200mib.bin"


def install_fuse(work):
    """FUSE for --mount: /dev/fuse, Debian's fuse3 (fusermount3, through which both mounts are
    made), and a `fusermount` on PATH for restic. Older restic (Debian 12's 0.14, built on
    bazil.org/fuse) runs `fusermount`, the fuse 2 name, to mount and unmount, and fails with
    `exec: "fusermount": executable file not found` without it; newer restic tries fusermount3
    first. Debian's fuse3 ships /bin/fusermount as a link to fusermount3, so this is usually done;
    where it is missing, a link of that name to fusermount3 in a folder of ours put first on PATH
    serves (fusermount3 takes the same arguments and hands over /dev/fuse the same way). Debian's
    `fuse` (fuse 2) package is no way out: fuse3 Breaks/Replaces it, so installing it would remove
    the fusermount3 that cairn's mount needs."""
    if not Path("/dev/fuse").exists():
        sys.exit("--mount needs FUSE: /dev/fuse is missing (load the fuse module, or give the container the device)")
    if not shutil.which("fusermount3"):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(sudo + ["apt-get", "update", "-qq"])
        sh(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "fuse3"],
           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not shutil.which("fusermount"):
        shim = work / "fuse-shim"
        shim.mkdir(parents=True, exist_ok=True)
        link = shim / "fusermount"
        if not link.is_symlink():
            link.symlink_to(shutil.which("fusermount3"))
        os.environ["PATH"] = f"{shim}:{os.environ['PATH']}"


def make_mount_tree(src, folders=20, per_folder=50, big_mib=200, seed=31):
    """The tree --mount browses, built once and reused: 1,000 notes of 1-20 KiB of words, 50 to a
    folder under notetaking/, and one file of 200 MiB of random bytes (MOUNT_BIG) under images/.
    Returns the notes' paths relative to `src`, in order."""
    notes = [f"notetaking/folder-{f:02}/note-{n:03}.md" for f in range(folders) for n in range(per_folder)]
    marker = src / ".complete"
    if marker.exists():
        return notes
    shutil.rmtree(src, ignore_errors=True)
    rng = random.Random(seed)
    for rel in notes:
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1 << 10, 20 << 10)
        lines, n = [], 0
        while n < size:
            line = " ".join(rng.choice(WORDS) for _ in range(12))
            lines.append(line)
            n += len(line) + 1
        p.write_text("\n".join(lines)[:size - 1] + "\n")
    big = src / MOUNT_BIG
    big.parent.mkdir(parents=True, exist_ok=True)
    with open(big, "wb") as f:
        for _ in range(big_mib):
            f.write(rng.randbytes(1 << 20))
    marker.write_text("ok\n")
    return notes


def make_tiny_files(corpus, files):
    """`files` files of a few bytes, 1,000 to a folder under notetaking/ (the scale run's tree and
    the find through a mount). Built once and reused; returns whether it was built now."""
    marker = corpus / f".complete-{files}"
    if marker.exists():
        return False
    shutil.rmtree(corpus, ignore_errors=True)
    for i in range(files):
        d = corpus / "notetaking" / f"d{i // 1000:04}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"n{i:07}.md").write_text(f"note {i}\n")
    marker.write_text("ok\n")
    return True


def mount_repos(cairn, work, name, src, folders, keep_restic=False):
    """The `folders` of `src` backed up once by each tool, under `work` in folders named after
    `name`: cairn's repository afresh (made by the cairn under test: its mount reads what this
    cairn writes), with `cairn backup --date MOUNT_DAY`; restic's with `restic backup --host
    bench`, kept from an earlier run when `keep_restic` and that run completed it (its marker),
    and its cache filled by one unmeasured `restic ls latest`, so that every round's mount starts
    from the cache a restic user has rather than the first round paying to fill it. Returns
    cairn's config, restic's environment, what the backups took, and what each mount reads from
    disk (for settle())."""
    base, rrepo, rcache = work / f"{name}-cairn", work / f"{name}-restic", work / f"{name}-restic-cache"
    rdone = work / f"{name}-restic.complete"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    cenv = local_cairn(base, src, f'folders = {json.dumps(folders)}\n')
    renv = {"RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(rrepo), "RESTIC_CACHE_DIR": str(rcache)}
    took = {}
    sh([str(cairn), "-q", "init"], env={**os.environ, **cenv})
    took["backup/cairn"] = measure([str(cairn), "-q", "backup", "--date", MOUNT_DAY], cenv)
    if not (keep_restic and rdone.exists()):
        rdone.unlink(missing_ok=True)
        for d in [rrepo, rcache]:
            shutil.rmtree(d, ignore_errors=True)
        sh(["restic", "init", "-q"], env={**os.environ, **renv}, stdout=subprocess.DEVNULL)
        took["backup/restic"] = measure(["restic", "-q", "backup", "--host", "bench"] + [str(src / f) for f in folders], renv)
        rdone.write_text("ok\n")
    sh(["restic", "-q", "ls", "latest"], env={**os.environ, **renv}, stdout=subprocess.DEVNULL)
    return base / "cairn.toml", renv, took, {"cairn": [base / "store", base / "state"], "restic": [rrepo, rcache]}


def is_mounted(mp):
    """Whether something is mounted at `mp` now (this process's mountinfo, whose paths write
    space, tab, newline and backslash as octal escapes)."""
    want = os.path.abspath(mp)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split(" ")[4])
            if point == want:
                return True
    return False


def unmount(mp):
    """Lazily unmounts whatever is still mounted at `mp`: `fusermount3 -u -z`, else `umount -l`."""
    for cmd in (["fusermount3", "-u", "-z", str(mp)], ["umount", "-l", str(mp)]):
        if not is_mounted(mp):
            return
        if shutil.which(cmd[0]):
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if is_mounted(mp):
        print(f"warning: {mp} is still mounted (fusermount3 -u -z {mp})", file=sys.stderr)


def peak_rss_mb(pid):
    """The peak resident set of process `pid` so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def mounted(cmd, mp, env, stop, log, timeout=600):
    """Runs `cmd`, a mount of `mp` serving in the foreground (its output into `log`), and yields
    the process and the seconds until `mp/snapshots` appeared. On the way out, however it is
    left: the signal `stop` (the one on which the tool unmounts and exits), up to 60 s for it to
    end (then SIGKILL), and whatever is still mounted at `mp` unmounted lazily, so that a failed
    or interrupted run leaves no mount behind. A mount left by an earlier run is undone first."""
    unmount(mp)
    mp.mkdir(parents=True, exist_ok=True)
    if any(mp.iterdir()):
        sys.exit(f"mount point {mp} is not empty: its snapshots/ would look mounted")
    t = time.monotonic()
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        while not (mp / "snapshots").exists():
            if p.poll() is not None:
                sys.exit(f"{' '.join(cmd[:3])} ended ({p.returncode}) before mounting: {log.read_text()[-2000:]}")
            if time.monotonic() - t > timeout:
                sys.exit(f"{cmd[0]}: {mp}/snapshots not there after {timeout} s: {log.read_text()[-2000:]}")
            time.sleep(0.01)
        yield p, time.monotonic() - t
    finally:
        if p.poll() is None:
            p.send_signal(stop)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                print(f"{cmd[0]} did not end within 60 s of signal {stop}: killed", file=sys.stderr)
                p.kill()
                p.wait()
        if is_mounted(mp):
            print(f"{cmd[0]} left {mp} mounted: unmounting it lazily", file=sys.stderr)
            unmount(mp)


def cairn_root(mp, folder):
    """The snapshot in a cairn mount: snapshots/MOUNT_DAY (a day's only snapshot is named by its
    date), holding the configured folders."""
    root = mp / "snapshots" / MOUNT_DAY
    if not (root / folder).is_dir():
        sys.exit(f"cairn mount: no {folder}/ in {root}; snapshots/ holds {sorted(os.listdir(mp / 'snapshots'))}")
    return root


def restic_root(mp, src, folder):
    """The source root `src` in a restic mount: snapshots/TIME (the one snapshot; `latest` is a
    symlink to it), then `src`'s absolute path, which restic keeps (a backup of
    /var/tmp/cairn-bench/mount-src/notetaking shows var/tmp/cairn-bench/mount-src/notetaking).
    If that path is not there, walked down from the snapshot one folder at a time while each
    level holds a single folder, until one holds `folder`."""
    snaps = [p for p in (mp / "snapshots").iterdir() if p.name != "latest"]
    if len(snaps) != 1:
        sys.exit(f"restic mount: expected one snapshot in {mp}/snapshots, found {sorted(p.name for p in snaps)}")
    root = snaps[0] / src.relative_to("/")
    if (root / folder).is_dir():
        return root
    d = snaps[0]
    while not (d / folder).is_dir():
        kids = [k for k in d.iterdir() if k.is_dir()]
        if len(kids) != 1:
            sys.exit(f"restic mount: no {folder}/ under {snaps[0]} (at {d}: {sorted(k.name for k in d.iterdir())})")
        d = kids[0]
    return d


def browse(cmd, env, stop, mp, repos, find_root, ops, log, mount_op="mount"):
    """One mount of one tool: its repository settled, `cmd` mounted at `mp` (timed until
    snapshots/ is there, as `mount_op`), then each of `ops` (a name and a function of the browsed
    root returning measure()'s figures) in turn, the first right after the mount came up (cold),
    the others each after settle(). Every figure carries the mount process's peak RSS so far
    (VmHWM, read right after the operation; the last is the peak just before unmounting).
    Returns the figures by operation and the mount's exit status after `stop`."""
    settle(*repos)
    r = {}
    with mounted(cmd, mp, env, stop, log) as (p, took):
        r[mount_op] = {"wall": took, "mount_rss_mb": peak_rss_mb(p.pid)}
        root = find_root(mp)
        for i, (name, op) in enumerate(ops):
            if i:
                settle(*repos)
            m = op(root)
            m["mount_rss_mb"] = peak_rss_mb(p.pid)
            r[name] = m
    return r, p.returncode


def timed(cmd, cwd=None, stdout=None):
    """measure() with its wall time taken by time.monotonic() around it: /usr/bin/time's %e
    counts in steps of 10 ms, coarse for a listing of a few tens of ms (its figure is kept as
    `wall_time`)."""
    t = time.monotonic()
    m = measure(cmd, cwd=cwd, stdout=stdout)
    m["wall_time"], m["wall"] = m["wall"], time.monotonic() - t
    return m


def find_small(root, out):
    """`find ROOT -type f -size -100c` (`-size` makes find stat every file: a lookup of each
    through the mount), its output counted afterwards."""
    m = timed(["find", str(root), "-type", "f", "-size", "-100c"], stdout=out)
    with open(out) as f:
        m["found"] = sum(1 for _ in f)
    out.unlink()
    return m


def mount_run(cairn, work, rounds, files):
    """--mount: the tree of make_mount_tree() backed up once by each tool, then in each of
    `rounds` rounds each tool's mount of it, afresh: mounted, `ls -lR` of the snapshot cold,
    `xargs cat` of the 1,000 notes, `cat` of the 200 MiB file; and with `files` > 0 a tree of
    `files` files of a few bytes (reused between runs, as is restic's backup of it) mounted by
    each tool on its own for one `find -size`. cairn unmounts on SIGTERM; restic on SIGINT (0.14
    dies on SIGTERM without unmounting: restic handles SIGTERM since 0.17). Returns the rounds
    and what the setup measured."""
    src = work / "mount-src"
    notes = make_mount_tree(src)
    listing = work / "mount-notes.txt"
    listing.write_text("".join(n + "\n" for n in notes))
    cfg, renv, took, repos = mount_repos(cairn, work, "mount", src, ["notetaking", "images"])
    info = {"files": files, "notes": len(notes), "folders": len({Path(n).parent for n in notes}),
            "notes_bytes": sum((src / n).stat().st_size for n in notes),
            "big_bytes": (src / MOUNT_BIG).stat().st_size, "setup": took, "exits": []}
    ops = [
        ("ls", lambda root: timed(["ls", "-lR", str(root)])),
        # One cat for all: 1,000 relative paths are far below xargs's 128 KiB command line.
        ("cat-notes", lambda root: timed(["xargs", "-a", str(listing), "-d", "\n", "cat"], cwd=root)),
        ("cat-big", lambda root: timed(["cat", str(root / MOUNT_BIG)])),
    ]
    plan = [(cfg, renv, repos, src, ops, "mount")]
    if files > 0:
        tsrc = work / f"mount-files-{files}"
        fresh = make_tiny_files(tsrc, files)
        tcfg, trenv, ttook, trepos = mount_repos(cairn, work, f"mount-files-{files}", tsrc, ["notetaking"],
                                                 keep_restic=not fresh)
        info["setup"].update({f"{k} ({files:,} files)": v for k, v in ttook.items()})
        find = [("find", lambda root: find_small(root, work / "mount-find.out"))]
        plan.append((tcfg, trenv, trepos, tsrc, find, "mount-files"))
    mps = {"cairn": work / "mnt-cairn", "restic": work / "mnt-restic"}

    def sessions(cfg_, renv_, src_):
        """cairn's mount and restic's of one tree: command, environment, stop signal, where the
        tree's root is inside the mount."""
        return [
            ("cairn", [str(cairn), "--config", str(cfg_), "mount", str(mps["cairn"]), "--no-archives"], {},
             signal.SIGTERM, lambda mp: cairn_root(mp, "notetaking")),
            ("restic", ["restic", "mount", str(mps["restic"])], renv_,
             signal.SIGINT, lambda mp: restic_root(mp, src_, "notetaking")),
        ]

    out = []
    for i in range(rounds):
        print(f"mount round {i + 1}/{rounds}", file=sys.stderr)
        r, exits = {}, {}
        for cfg_, renv_, repos_, src_, ops_, mount_op in plan:
            for tool, cmd, env, stop, find_root in sessions(cfg_, renv_, src_):
                got, code = browse(cmd, env, stop, mps[tool], repos_[tool], find_root, ops_,
                                   work / f"mount-{tool}.log", mount_op)
                r.update({f"{op}/{tool}": m for op, m in got.items()})
                exits[f"{mount_op}/{tool}"] = code
        out.append(r)
        info["exits"].append(exits)
    return out, info


def report_mount(rounds, info):
    """The --mount table: each operation's wall time and the mount's peak RSS by then (medians
    over the rounds), then cairn / restic for each, against not slower than restic."""
    files = info["files"]
    names = {
        "mount": "mount (until snapshots/ is there)",
        "ls": "ls -lR of the snapshot, cold",
        "cat-notes": f"cat {info['notes']:,} notes (one xargs cat)",
        "cat-big": f"cat {info['big_bytes'] >> 20} MiB file",
        "mount-files": f"mount ({files:,} files)",
        "find": f"find -type f -size -100c, {files:,} files",
    }
    keys = [f"{op}/{tool}" for op in names for tool in ["cairn", "restic"] if f"{op}/{tool}" in rounds[0]]
    lines = [f"{len(rounds)} rounds (medians), each tool mounted afresh in each. Tree: {info['notes']:,} notes "
             f"({info['notes_bytes'] / 2**20:.1f} MiB) in {info['folders']} folders and one {info['big_bytes'] >> 20} MiB file of "
             f"random bytes" + (f"; {files:,} files of a few bytes in a mount of their own." if files else "."), "",
             "| operation | tool | wall s | mount peak RSS MiB |", "| --- | --- | ---: | ---: |"]
    for k in keys:
        op, tool = k.split("/")
        lines.append(f"| {names[op]} | {tool} | {median_of(rounds, k, 'wall'):.3f} | "
                     f"{median_of(rounds, k, 'mount_rss_mb'):.0f} |")

    def ratio(op, field="wall"):
        return median_of(rounds, f"{op}/cairn", field) / max(median_of(rounds, f"{op}/restic", field), 1e-9)

    goals = [(names[op], ratio(op), 1.0) for op in ["ls", "cat-notes", "cat-big", "find"] if f"{op}/cairn" in rounds[0]]
    notes = [(names["mount"], ratio("mount")),
             ("mount peak RSS before unmounting", ratio("cat-big", "mount_rss_mb"))]
    if files:
        notes += [(names["mount-files"], ratio("mount-files")),
                  (f"mount peak RSS before unmounting, {files:,} files", ratio("find", "mount_rss_mb"))]
    lines += ["", "| goal | ratio (cairn / restic) | target | met |", "| --- | ---: | ---: | :-: |"]
    lines += [f"| {g} | {v:.3f} | ≤ {t} | {'yes' if v <= t else 'no'} |" for g, v, t in goals]
    lines += [f"| {g} | {v:.3f} | — | — |" for g, v in notes]
    mib = info["big_bytes"] / 2**20
    lines += ["", "Sequential read of the big file: " + ", ".join(
        f"{tool} {mib / median_of(rounds, f'cat-big/{tool}', 'wall'):.0f} MiB/s" for tool in ["cairn", "restic"]) + "."]
    if files:
        found = {tool: rounds[-1][f"find/{tool}"]["found"] for tool in ["cairn", "restic"]}
        lines.append(f"Files found by find (last round): cairn {found['cairn']:,}, restic {found['restic']:,} "
                     f"(of {files:,}).")
    lines.append("Mount peak RSS: VmHWM of the mount process (restic's own process) read right after the operation; "
                 "the operations before the find run in this order in one mount, so each figure is the peak up to "
                 "it, and the last one's is the peak just before unmounting.")
    lines.append("Exit status after unmounting (cairn: SIGTERM, restic: SIGINT), last round: " + ", ".join(
        f"{k} {v}" for k, v in info["exits"][-1].items()) + ".")
    return "\n".join(lines)


def median_of(rounds, key, field):
    return statistics.median(rd[key][field] for rd in rounds)


def report(rounds, sizes, scale, args):
    lines = [f"Rounds: {len(rounds)} (medians). Corpus: {sizes['corpus'] / 1e9:.2f} GB.", "",
             "| operation | tool | wall s | CPU s | peak RSS MiB |", "| --- | --- | ---: | ---: | ---: |"]
    keys = [k for k in rounds[0]]
    for k in keys:
        op, tool = k.split("/")
        lines.append(f"| {op} | {tool} | {median_of(rounds, k, 'wall'):.2f} | {median_of(rounds, k, 'cpu'):.2f} | "
                     f"{median_of(rounds, k, 'rss_mb'):.0f} |")
    for k, v in (scale or {}).items():
        op, tool = k.split("/")
        lines.append(f"| {op} ({args.scale_files:,} files) | {tool} | {v['wall']:.2f} | {v['cpu']:.2f} | {v['rss_mb']:.0f} |")
    lines += ["", "| size | bytes |", "| --- | ---: |"] + [f"| {k} | {v:,} |" for k, v in sizes.items()]

    def ratio(a, b, field="wall", src=rounds):
        return median_of(src, a, field) / max(median_of(src, b, field), 1e-9)

    goals = [
        ("full first backup", ratio("full/cairn", "full/restic"), 0.5),
        ("no-change rerun", ratio("rerun/cairn", "rerun/restic"), 0.15),
        ("one day of changes", ratio("changes/cairn", "changes/restic"), 0.5),
        ("daily export / tar | zstd", ratio("export/cairn", "export/tar"), 0.5),
        ("daily export / its floor (SHA-256 of the archive, compression over 2 cores)",
         ratio("export/cairn", "export/floor"), 1.25),
        ("daily export (size)", sizes["archive/cairn"] / sizes["archive/tar"], 1.03),
        ("next day's export / SHA-256 of its archive",
         median_of(rounds, "export2/cairn", "wall") / median_of(rounds, "export2/floor", "sha256"), 1.15),
        ("full restore", ratio("restore/cairn", "restore/restic"), 1.0),
        ("repository size", sizes["repo/cairn"] / sizes["repo/restic"], 1.0),
    ]
    rss = max(median_of(rounds, f"{op}/cairn", "rss_mb") / median_of(rounds, f"{op}/restic", "rss_mb")
              for op in ["full", "rerun", "changes", "restore"])
    goals.append(("peak RSS, worst operation", rss, 1.0))
    if scale:
        goals.append(("1M-file no-change rerun", scale["scale-rerun/cairn"]["wall"] / scale["scale-rerun/restic"]["wall"], 0.15))
        goals.append(("1M-file rerun peak RSS", scale["scale-rerun/cairn"]["rss_mb"] / scale["scale-rerun/restic"]["rss_mb"], 1.0))
    lines += ["", "| goal | ratio (cairn / reference) | target | met |", "| --- | ---: | ---: | :-: |"]
    for name, value, target in goals:
        lines.append(f"| {name.replace('|', chr(92) + '|')} | {value:.3f} | ≤ {target} | {'yes' if value <= target else 'no'} |")
    return "\n".join(lines)



def progress_run(cairn, work, rounds):
    """The cost of the progress display: a full backup, the export, a restore and
    `check --read-data` of the corpus, each with `-q` and on a terminal (`script` gives cairn a
    pseudo-terminal, so the line is drawn and redrawn), alternating per round."""
    corpus = fresh_corpus(work, "corpus")
    out = {"quiet": [], "terminal": []}
    for rnd in range(rounds):
        for mode in ("quiet", "terminal") if rnd % 2 == 0 else ("terminal", "quiet"):
            base = work / "progress-cairn"
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            env = local_cairn(base, corpus)
            sh([str(cairn), "-q", "init"], env={**os.environ, **env})
            r = {}
            for op, args in [("backup", ["backup", "--date", "2026-11-29"]),
                             ("export", ["export", "--date", "2026-11-29"]),
                             ("restore", ["restore", "--target", str(base / "restore")]),
                             ("check", ["check", "--read-data"])]:
                settle(corpus, base)
                if mode == "quiet":
                    r[op] = measure([str(cairn), "-q"] + args, env)
                else:
                    line = "stty cols 160 rows 40; " + " ".join(shlex.quote(a) for a in [str(cairn)] + args)
                    r[op] = measure(["script", "-qec", line, "/dev/null"], env)
            out[mode].append(r)
            print(f"progress round {rnd + 1}/{rounds} {mode}: "
                  + ", ".join(f"{k} {v['wall']:.2f} s" for k, v in r.items()), file=sys.stderr)
    return out


def report_progress(runs):
    ops = ["backup", "export", "restore", "check"]
    lines = ["| operation | `-q` wall s (median) | terminal wall s (median) | terminal / `-q` | `-q` runs | terminal runs |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    for op in ops:
        q = [r[op]["wall"] for r in runs["quiet"]]
        t = [r[op]["wall"] for r in runs["terminal"]]
        mq, mt = statistics.median(q), statistics.median(t)
        lines.append(f"| {op} | {mq:.2f} | {mt:.2f} | {mt / mq:.3f} | "
                     f"{', '.join(f'{x:.2f}' for x in q)} | {', '.join(f'{x:.2f}' for x in t)} |")
    return "\n".join(lines)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("BENCH_WORK", "/var/tmp/cairn-bench")))
    ap.add_argument("--scale-files", type=int, default=1_000_000)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--gc", action="store_true",
                    help="only the garbage-collection comparison: 14 days, keep 7, prune beside restic and borg")
    ap.add_argument("--seek-extra-mb", type=int, default=200,
                    help="incompressible megabytes added to the corpus for --seek (the archive's size)")
    ap.add_argument("--seek", action="store_true",
                    help="only one file out of a >2 GB day's archive on Garage, beside aws | zstd | tar")
    ap.add_argument("--offsite", action="store_true",
                    help="only the offsite stage: one exported day through cairn offsite sync (rclone) beside rclone copy")
    ap.add_argument("--tiny", action="store_true",
                    help="only a share of tiny notes (200,000, and 1,000,000 unless --skip-scale): "
                         "backup beside restic, exports beside tar | zstd and their floors")
    ap.add_argument("--s3", action="store_true",
                    help="store and exports on a Garage server on loopback, beside restic on S3 and tar | zstd | aws s3 cp")
    ap.add_argument("--link", type=link_arg, metavar="RATE,LATENCY",
                    help="with --s3: every request through link-proxy, each direction capped at RATE MB/s and delayed "
                         "by LATENCY ms one way (a Raspberry Pi's 1 GbE: 117,2); default: plain loopback")
    ap.add_argument("--progress", action="store_true",
                    help="backup, export, restore and check --read-data with -q and on a terminal: the progress line's cost")
    ap.add_argument("--mount", action="store_true",
                    help="only browsing a snapshot: cairn mount beside restic mount (ls -lR, cat of 1,000 notes and "
                         "of a 200 MiB file, find over --mount-files files), wall time and the mount's peak RSS")
    ap.add_argument("--mount-files", type=int, default=200_000,
                    help="files of a few bytes for --mount's find through the mount (0: no find); built and backed "
                         "up once, then reused")
    args = ap.parse_args()
    if args.link and not args.s3:
        ap.error("--link needs --s3")
    install()
    cairn = build_cairn()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.mount:
        # Absolute: the mount points are compared with /proc/self/mountinfo, and restic keeps
        # the absolute path of what it backed up.
        work = args.work.resolve()
        install_fuse(work)
        rounds, info = mount_run(cairn, work, args.rounds, args.mount_files)
        versions = {
            "cairn": subprocess.run([str(cairn), "--version"], capture_output=True, text=True).stdout.strip(),
            "restic": subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.strip(),
            "fusermount3": subprocess.run(["fusermount3", "-V"], capture_output=True, text=True).stdout.strip(),
            "kernel": os.uname().release,
        }
        text = "\n".join(f"- {k}: {v}" for k, v in versions.items()) + "\n\n" + report_mount(rounds, info)
        (work / "results-mount.md").write_text(text + "\n")
        (work / "results-mount.json").write_text(json.dumps({"rounds": rounds, "versions": versions, **info}, indent=1))
        print(text)
        return
    if args.seek:
        install_aws()
        make_corpus(args.work / "pristine")
        r, text = seek_run(cairn, args.work, rounds=args.rounds, extra_mb=args.seek_extra_mb)
        (args.work / "results-seek.md").write_text(text + "\n")
        (args.work / "results-seek.json").write_text(json.dumps(r, indent=1))
        print(text)
        return
    if args.offsite:
        r, text = offsite_run(cairn, args.work)
        (args.work / "results-offsite.md").write_text(text + "\n")
        (args.work / "results-offsite.json").write_text(json.dumps(r, indent=1))
        print(text)
        return
    if args.tiny:
        runs = {}
        for files in [200_000] + ([] if args.skip_scale else [args.scale_files]):
            print(f"tiny files: {files:,}", file=sys.stderr)
            runs[files] = tiny_run(cairn, args.work, files, rounds=args.rounds)
        text = report_tiny(runs)
        (args.work / "results-tiny.md").write_text(text + "\n")
        (args.work / "results-tiny.json").write_text(json.dumps({str(k): v for k, v in runs.items()}, indent=1))
        print(text)
        return
    make_corpus(args.work / "pristine")
    if args.progress:
        runs = progress_run(cairn, args.work, args.rounds)
        text = report_progress(runs)
        (args.work / "results-progress.md").write_text(text + "\n")
        (args.work / "results-progress.json").write_text(json.dumps(runs, indent=1))
        print(text)
        return
    if args.gc:
        r, sizes = gc_run(cairn, args.work)
        scale = None
        if not args.skip_scale:
            if not (args.work / "scale-cairn" / "store").exists():
                scale_run(cairn, args.work, args.scale_files)
            scale = scale_gc(cairn, args.work)
        text = report_gc(r, sizes, scale)
        (args.work / "results-gc.md").write_text(text + "\n")
        (args.work / "results-gc.json").write_text(json.dumps({"gc": r, "sizes": sizes, "scale": scale}, indent=1))
        print(text)
        return
    if args.s3:
        install_aws()
        link_proxy, s3_floor = build_s3_tools()
        s3 = s3_server(args.work)
        proxy = None
        try:
            if args.link:
                # Everything of the round (cairn, restic, aws, s3-floor) talks to the proxy.
                proxy, ep = start_link_proxy(link_proxy, s3["CAIRN_S3_TEST_ENDPOINT"], *args.link)
                s3 = {**s3, "CAIRN_S3_TEST_ENDPOINT": ep}
            rounds, sizes = [], None
            for i in range(args.rounds):
                print(f"S3 round {i + 1}/{args.rounds}", file=sys.stderr)
                r, sizes = one_round_s3(cairn, args.work, i, s3, s3_floor)
                rounds.append(r)
        finally:
            if proxy:
                stop_process(proxy)
            sh([str(ROOT / "scripts/s3-server.sh"), "stop"], env={**os.environ, "CAIRN_S3_DIR": s3["CAIRN_S3_DIR"]})
        text = report_s3(rounds, sizes, args.link)
        name = "results-s3-link" if args.link else "results-s3"
        profile = {"link": {"rate_mb_s": args.link[0], "latency_ms": args.link[1]} if args.link else None}
        (args.work / f"{name}.md").write_text(text + "\n")
        (args.work / f"{name}.json").write_text(json.dumps({**profile, "rounds": rounds, "sizes": sizes}, indent=1))
        print(text)
        return
    rounds, sizes = [], None
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
        r, sizes = one_round(cairn, args.work, i)
        rounds.append(r)
    scale = None if args.skip_scale else scale_run(cairn, args.work, args.scale_files)
    versions = {
        "cairn": subprocess.run([str(cairn), "--version"], capture_output=True, text=True).stdout.strip(),
        "restic": subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.strip(),
        "borg": subprocess.run(["borg", "--version"], capture_output=True, text=True).stdout.strip(),
        "zstd": subprocess.run(["zstd", "--version"], capture_output=True, text=True).stdout.strip(),
    }
    text = report(rounds, sizes, scale, args)
    out = args.work / "results.md"
    out.write_text("\n".join(f"- {k}: {v}" for k, v in versions.items()) + "\n\n" + text + "\n")
    (args.work / "results.json").write_text(json.dumps({"rounds": rounds, "sizes": sizes, "scale": scale}, indent=1))
    print(out.read_text())


if __name__ == "__main__":
    main()
