"""What the deployment checks (scripts/k8s-check.py, scripts/pod-check.py) share: a real
Pushgateway started on a free loopback port, scraped, and its pushed series read back; and the
ConfigMap's `cairn.toml` pointed at the S3 test server."""

import os
import re
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_pushgateway():
    """`prometheus-pushgateway` on a free port, once it accepts connections: (process, port)."""
    port = free_port()
    gw = subprocess.Popen(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    return gw, port


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text, name, stage):
    """The value of cairn's `name` for `stage`, or None."""
    for line in text.splitlines():
        if line.startswith(name + "{") and f'stage="{stage}"' in line and 'job="cairn"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def point_at_test_server(cfg, prefix):
    """The ConfigMap's `cairn.toml` with its S3 locations on the test server (scripts/s3-server.sh),
    below `prefix`; ValueError if they are not where the manifest puts them."""
    endpoint = re.search(r'endpoint = "([^"]+)"', cfg).group(1)
    region = os.environ.get("CAIRN_S3_TEST_REGION", "garage")
    cfg = cfg.replace(f'endpoint = "{endpoint}"', f'endpoint = "{os.environ["CAIRN_S3_TEST_ENDPOINT"]}"')
    cfg = re.sub(r'region = "[^"]*"', f'region = "{region}"', cfg)
    cfg = cfg.replace('bucket = "homelab-backup-shared-archives"\nprefix = "store"',
                      f'bucket = "{os.environ["CAIRN_S3_TEST_BUCKET"]}"\nprefix = "{prefix}/store"')
    cfg = cfg.replace('bucket = "homelab-backup-shared-archives"\nprefix = ""',
                      f'bucket = "{os.environ["CAIRN_S3_TEST_EXPORTS_BUCKET"]}"\nprefix = "{prefix}"')
    if prefix not in cfg:
        raise ValueError(f"the ConfigMap's S3 locations are not where this test expects them:\n{cfg}")
    return cfg

