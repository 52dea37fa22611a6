#!/usr/bin/env python3
"""Offline checks of the deployment (k8s/), run by scripts/test.sh:

1. the manifests are the kubenix module's evaluation (`nix-instantiate --eval --strict --json`);
2. `kubernetes-validate --strict` passes for every Kubernetes version the homelab runs;
3. no manifest holds a literal secret or a placeholder (the scan is first shown to catch both);
4. `promtool check rules` and `promtool test rules` pass, and the Grafana alerts are generated
   from the same rules, their expressions valid PromQL too;
5. the Dockerfile passes hadolint (and builds, where a container engine runs);
6. the backup CronJob's own command, arguments and environment, read from the manifest, run
   against the S3 test server and a sample tree, with a real Pushgateway that receives the
   metrics of a good night and of a failing one; the restore drill of docs/OPERATIONS.md runs
   verbatim against what that night published.
Prints one line per check; exits 1 at the first failure.
"""

import datetime
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zoneinfo
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
MANIFEST = K8S / "shared-subfolders-backup.yaml"
VERSIONS = ["1.29.0", "1.30.0", "1.31.0"]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"k8s-check: {' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r


SECRET_NAME = re.compile(r"(PASS|SECRET|TOKEN|KEY|CREDENTIAL)", re.I)
PLACEHOLDER = re.compile(r"(?i)(changeme|change[-_ ]me|replace[-_ ]?me|placeholder|\btodo\b|\bxxx+\b|<[a-z_-]+>|secret_access_key\s*=|password\s*=)")


def secret_problems(docs):
    """Literal secrets and placeholders in manifests: the list of what is wrong."""
    problems = []

    def walk(obj, path):
        if isinstance(obj, dict):
            if "name" in obj and "value" in obj and SECRET_NAME.search(str(obj["name"])):
                problems.append(f"{path}: {obj['name']} has a literal value")
            for k, v in obj.items():
                walk(v, f"{path}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]")
        elif isinstance(obj, str) and PLACEHOLDER.search(obj):
            problems.append(f"{path}: placeholder or secret text {PLACEHOLDER.search(obj).group(0)!r}")

    for d in docs:
        if d.get("kind") == "Secret":
            problems.append(f"Secret {d['metadata']['name']} is in the manifests")
        walk(d, f"{d.get('kind')}/{d.get('metadata', {}).get('name')}")
    return problems


def check_secrets():
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    # The scan must be able to fail: a literal key and a placeholder are both caught.
    bad = json.loads(json.dumps(docs))
    for d in bad:
        for c in d.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            c["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "hunter2hunter2"})
    bad.append({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "password = changeme"}})
    caught = secret_problems(bad)
    assert any("literal value" in p for p in caught) and any("placeholder" in p for p in caught), caught
    problems = secret_problems(docs)
    if problems:
        sys.exit("k8s-check: " + "; ".join(problems))
    print("k8s-check: no literal secret or placeholder in the manifests")


# The homelab plan's names (shared/plan): what its operator creates and scripts against.
PLAN = {
    "endpoint": "http://10.10.10.209:9000",
    "bucket": "homelab-backup-shared-archives",
    "claim": "cephfs-shared-storage-root",
    "nightly_secret": "shared-subfolders-backup-s3-credentials",
    "retention_secret": "shared-subfolders-backup-retention-s3-credentials",
    "keys": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "taken": "shared-subfolders-backup-config",  # the plan's encrypted Secret manifest
}


def plan_problems(docs):
    """Where the manifests depart from the plan's names: the list of what is wrong."""
    problems = []
    configs = [d for d in docs if d.get("kind") == "ConfigMap"]
    text = "".join(v for d in configs for v in d.get("data", {}).values())
    for what in ("endpoint", "bucket"):
        if f'{what} = "{PLAN[what]}"' not in text:
            problems.append(f"cairn.toml has no {what} = {PLAN[what]!r}")
    if any(d["metadata"]["name"] == PLAN["taken"] for d in configs):
        problems.append(f"a ConfigMap is named {PLAN['taken']}, the plan's Secret manifest")
    refs = []
    for d in docs:
        pod = d.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            refs += [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v]
        if d.get("metadata", {}).get("name") == "shared-subfolders-backup" and PLAN["claim"] not in claims:
            problems.append(f"the backup CronJob does not mount {PLAN['claim']}")
    names = {r["name"] for r in refs}
    for want in ("nightly_secret", "retention_secret"):
        if PLAN[want] not in names:
            problems.append(f"no container takes its key from the Secret {PLAN[want]}")
    for r in refs:
        if r["name"] not in (PLAN["nightly_secret"], PLAN["retention_secret"]) or r["key"] not in PLAN["keys"]:
            problems.append(f"a container reads {r['name']}/{r['key']}, not a Secret and key of the plan")
    return problems


def check_plan_names():
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    # The check must be able to fail: an old Secret name, key and endpoint are all caught.
    bad = yaml.safe_load_all(MANIFEST.read_text().replace(PLAN["nightly_secret"], "shared-subfolders-backup-s3")
                             .replace("key: AWS_ACCESS_KEY_ID", "key: access-key-id")
                             .replace(PLAN["endpoint"], "http://minio.minio.svc:9000"))
    caught = plan_problems([d for d in bad if d])
    assert len(caught) >= 3, caught
    problems = plan_problems(docs)
    if problems:
        sys.exit("k8s-check: " + "; ".join(problems))
    print("k8s-check: the manifests use the homelab plan's endpoint, bucket, claim, Secrets and keys")


def check_rules():
    mon = K8S / "monitoring"
    run(["promtool", "check", "rules", str(mon / "rules.yaml")])
    run(["promtool", "test", "rules", "rules_test.yaml"], cwd=mon)
    run([sys.executable, str(mon / "grafana.py"), "--check"])
    grafana = json.loads((mon / "grafana-alerts.json").read_text())
    rules = {"groups": [{"name": "grafana", "rules": [
        {"record": "cairn:grafana_" + str(i), "expr": d["model"]["expr"]}
        for i, r in enumerate(r for g in grafana["groups"] for r in g["rules"])
        for d in r["data"] if d["refId"] == "A"]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(rules, f)
        f.flush()
        run(["promtool", "check", "rules", f.name])
    print("k8s-check: promtool check and test rules pass; the Grafana alerts match the rules")


def check_image():
    run(["hadolint", str(K8S / "Dockerfile")])
    engine = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if engine:
        run(["docker", "build", "-f", str(K8S / "Dockerfile"), "-t", "cairn:test", str(ROOT)])
        r = run(["docker", "run", "--rm", "--user", "65532:65532", "cairn:test", "--version"])
        print(f"k8s-check: the image builds and runs as non-root: {r.stdout.strip()}")
    else:
        print("k8s-check: hadolint passes; no container engine runs here, so the image is not built")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text, name, stage):
    for line in text.splitlines():
        if line.startswith(name + "{") and f'stage="{stage}"' in line and 'job="cairn"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def check_cronjob(cairn):
    if "CAIRN_S3_TEST_ENDPOINT" not in os.environ:
        if os.environ.get("CI") == "true":
            sys.exit("k8s-check: CI=true but no S3 test server (scripts/s3-server.sh)")
        print("k8s-check: skipping the CronJob run: no S3 test server")
        return
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}
    cron = docs[("CronJob", "shared-subfolders-backup")]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = docs[("ConfigMap", "shared-subfolders-backup-cairn")]["data"]["cairn.toml"]
    work = Path(tempfile.mkdtemp(prefix="cairn-k8s-"))
    port = free_port()
    gw = subprocess.Popen(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        # The manifest's volumes, as directories: the share, the state volume, /tmp.
        mounts = {m["mountPath"]: work / m["name"] for m in container["volumeMounts"]}
        for d in mounts.values():
            d.mkdir(parents=True, exist_ok=True)
        share = mounts["/shared"]
        for folder in ["notetaking", "images", "backup"]:
            (share / folder).mkdir()
        (share / "notetaking" / "todo.md").write_text("- restore drill\n" * 100)
        (share / "images" / "photo.raw").write_bytes(os.urandom(3 << 20))
        (share / "backup" / "router.json").write_text('{"ssid": "home"}\n')
        prefix = f"k8s-{os.getpid()}-{time.time_ns()}"
        # The ConfigMap's file, pointed at the test server, the directories and the Pushgateway.
        cfg = (config.replace(re.search(r'endpoint = "([^"]+)"', config).group(1), os.environ["CAIRN_S3_TEST_ENDPOINT"])
               .replace('region = "us-east-1"', f'region = "{os.environ.get("CAIRN_S3_TEST_REGION", "garage")}"')
               .replace('bucket = "homelab-backup-shared-archives"\nprefix = "store"',
                        f'bucket = "{os.environ["CAIRN_S3_TEST_BUCKET"]}"\nprefix = "{prefix}/store"')
               .replace('bucket = "homelab-backup-shared-archives"\nprefix = ""',
                        f'bucket = "{os.environ["CAIRN_S3_TEST_EXPORTS_BUCKET"]}"\nprefix = "{prefix}"')
               .replace('root = "/shared"', f'root = "{share}"')
               .replace('dir = "/state"', f'dir = "{mounts["/state"]}"')
               .replace(re.search(r'pushgateway = "([^"]+)"', config).group(1), f"http://127.0.0.1:{port}"))
        (mounts["/etc/cairn"] / "cairn.toml").write_text(cfg)
        # The container's environment: values as written, Secret references from the test server's
        # key, the downward API's CPU limit as Kubernetes gives it.
        env = {"PATH": os.environ["PATH"]}

        def remap(value):
            """A path in the pod, as the directory that stands for its volume here."""
            for mount in sorted(mounts, key=len, reverse=True):
                if value == mount or value.startswith(mount + "/"):
                    return str(mounts[mount]) + value[len(mount):]
            return value

        secrets = {"AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"]}
        cpu = container["resources"]["limits"]["cpu"]
        for e in container["env"]:
            if "value" in e:
                env[e["name"]] = remap(e["value"])
            elif "secretKeyRef" in e["valueFrom"]:
                env[e["name"]] = secrets[e["valueFrom"]["secretKeyRef"]["key"]]
            else:
                millis = int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)
                env[e["name"]] = str(math.ceil(millis / 1000))
        cmd = [str(cairn) if c == "/usr/local/bin/cairn" else c for c in container["command"]] + container["args"]
        # The pod's init containers first, as the kubelet runs them (they create the repository).
        for init in pod.get("initContainers", []):
            icmd = [str(cairn) if c == "/usr/local/bin/cairn" else c for c in init["command"]] + init["args"]
            r = subprocess.run(icmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"k8s-check: the init container {init['name']} failed: {r.stderr[-2000:]}")
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"k8s-check: the CronJob's command {cmd} failed ({r.returncode}): {r.stderr[-2000:]}")
        text = scrape(port)
        for stage in ["backup", "export"]:
            if metric(text, f"cairn_{stage}_success", stage) != 1.0:
                sys.exit(f"k8s-check: the Pushgateway has no success of {stage}:\n{text}")
        ok = metric(text, "cairn_backup_last_success_timestamp_seconds", "backup")
        if ok is None:
            sys.exit(f"k8s-check: no last success time was pushed:\n{text}")
        print(f"k8s-check: the backup CronJob's command ran against the S3 server; the Pushgateway got its stages")
        drill(env, work)
        # A failing night: the store's key no longer works.
        time.sleep(1.1)
        bad = dict(env, AWS_SECRET_ACCESS_KEY="not-the-key")
        r = subprocess.run(cmd, env=bad, capture_output=True, text=True)
        if r.returncode == 0:
            sys.exit("k8s-check: a run with a wrong key succeeded")
        text = scrape(port)
        if metric(text, "cairn_backup_success", "backup") != 0.0:
            sys.exit(f"k8s-check: the failing run pushed no failure:\n{text}")
        if metric(text, "cairn_backup_last_success_timestamp_seconds", "backup") != ok:
            sys.exit("k8s-check: the failing run erased the last success")
        print("k8s-check: a failing run pushed its failure and kept the last success")
    finally:
        gw.kill()
        gw.wait()
        shutil.rmtree(work, ignore_errors=True)


def drill(env, work):
    """The restore drill of docs/OPERATIONS.md, its code block run verbatim with bash."""
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    m = re.search(r"<!-- restore-drill -->\n```bash\n(.*?)```", doc, re.S)
    if not m:
        sys.exit("k8s-check: docs/OPERATIONS.md has no restore drill block")
    drill_env = dict(env)
    drill_env.pop("AWS_CA_BUNDLE", None)
    drill_env.update({
        "DRILL_DIR": str(work / "drill"),
        "DATE": datetime.datetime.now(zoneinfo.ZoneInfo(re.search(r'timezone = "([^"]+)"', Path(env["CAIRN_CONFIG"]).read_text()).group(1))).strftime("%Y-%m-%d"),
        "BUCKET": os.environ["CAIRN_S3_TEST_EXPORTS_BUCKET"] + "/" + re.search(r'prefix = "(k8s-[^"/]+)"', (Path(env["CAIRN_CONFIG"])).read_text()).group(1),
        "AWS_ENDPOINT_URL": os.environ["CAIRN_S3_TEST_ENDPOINT"],
        "AWS_DEFAULT_REGION": os.environ.get("CAIRN_S3_TEST_REGION", "garage"),
    })
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", m.group(1)], env=drill_env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"k8s-check: the restore drill failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    print("k8s-check: the restore drill of docs/OPERATIONS.md ran verbatim and passed")


def main():
    cairn = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    run([sys.executable, str(K8S / "render.py"), "--check"])
    print("k8s-check: the manifests equal the kubenix module's evaluation")
    for v in VERSIONS:
        run(["kubernetes-validate", "--strict", "--quiet", "-k", v, str(MANIFEST)])
    print(f"k8s-check: kubernetes-validate --strict passes for {', '.join(VERSIONS)}")
    check_secrets()
    check_plan_names()
    check_rules()
    check_image()
    if cairn:
        check_cronjob(cairn)


if __name__ == "__main__":
    main()
