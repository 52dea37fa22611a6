"""A real Pushgateway for the deployment checks (scripts/k8s-check.py, scripts/pod-check.py):
started on a free loopback port, scraped, and its pushed series read back."""

import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start():
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
