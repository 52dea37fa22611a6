#!/usr/bin/env python3
"""The deployment as it will run: the image built from k8s/Dockerfile and every CronJob's pod run
in a real container runtime (podman with runc), from the kubenix module's own evaluation.

Usage: scripts/pod-check.py CAIRN_BINARY

What it does, in order:
1. a base image made with mmdebstrap (cached as a tarball beside Garage's build, like it), the
   image built from k8s/Dockerfile's runtime stage with this checkout's `cairn`, Debian's
   rclone and the Proton Drive CLI stand-in (testdata/fake-proton-drive) — the default build
   compiles and fetches those instead;
2. the module evaluated with the image, the share's group in supplementalGroups and the test
   Pushgateway; each CronJob's job template then runs as a pod: its init containers in order,
   then its container, each with the pod's and the container's securityContext (uid, gid,
   supplementary groups and fsGroup, read-only root filesystem, no capabilities, no privilege
   escalation, the runtime's default seccomp profile), its volumes (the ConfigMap's files where
   the manifest mounts them, emptyDirs as tmpfs, each PVC as a directory of its own, the share
   read-only and owned by another uid, group-readable), its env (Secret references from a test
   Secret, the downward API's CPU limit) and its command and arguments as rendered;
3. against Garage on loopback and a real Pushgateway: three nights of the backup CronJob (the
   second unchanged, the third with a change), retention, the Proton login and sync, the restore
   drill; each pod's exit code, the day's objects in the bucket (the aws CLI), the archive
   against its `.sha256` (sha256sum -c), the run reports and the pushed metrics are checked;
4. a real Prometheus scraping that Pushgateway with the shipped rules (`for:` dropped): nothing
   fires after the good nights, every dashboard query has data, a failing night and a failing
   retention fire their alerts and the next good ones resolve them; a second Prometheus on
   series backfilled with promtool (days of silence, a week's growth, kube-state-metrics) fires
   each rule about them.

The only changes to what the manifest says: the ConfigMap's S3 endpoint, region, bucket names
and prefixes point at the test server (the manifest names the homelab's MinIO), the backup's
`run` gets `--date` so that three nights are three days, and the network is the host's (the
test servers listen on loopback). Prints one line per step; exits 1 at the first failure.
"""

import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "k8s"))
import render  # noqa: E402  (k8s/render.py: the module's evaluation)

sys.path.insert(0, str(ROOT / "scripts"))
import deploy_test  # noqa: E402
from deploy_test import metric, point_at_test_server, scrape  # noqa: E402

CACHE = Path(os.environ.get("CAIRN_CI_CACHE", Path.home() / ".cache" / "cairn-ci"))
# What the base holds: the tarball's and the image's names change with it, so a cached base is
# never one of another content.
BASE_PACKAGES = "ca-certificates,zstd,python3"
BASE_TAG = "bookworm-" + __import__("hashlib").sha256(BASE_PACKAGES.encode()).hexdigest()[:8]
BASE_TAR = CACHE / f"cairn-base-{BASE_TAG}.tar"
BASE_IMAGE = f"localhost/cairn-base:{BASE_TAG}"
IMAGE = "localhost/cairn:test"
SHARE_GROUP = 3000
NAME = "shared-subfolders-backup"


def fail(msg):
    sys.exit(f"pod-check: {msg}")


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        fail(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r


def podman_env():
    """podman's settings for these machines, in a file of the test's own (nothing system-wide):
    runc (crun refuses this kernel's hybrid cgroups), cgroupfs, no default ulimits."""
    conf = CACHE / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n'
                    'runtime = "runc"\nevents_logger = "file"\n')
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    return env


def ensure_podman():
    missing = [t for t in ("podman", "runc", "mmdebstrap") if not shutil.which(t)]
    if missing:
        if os.environ.get("CI") == "true":
            fail(f"CI=true but {', '.join(missing)} missing (scripts/test.sh installs them)")
        print(f"pod-check: skipping: {', '.join(missing)} not installed")
        sys.exit(0)


def base_image(env):
    """The base image: Debian bookworm minbase with what the runtime stage installs anyway, and
    python3 for the Proton Drive CLI stand-in (a Python script); cached as a tarball."""
    if not BASE_TAR.exists():
        # mmdebstrap picks the output's format by its name: a tarball's must end in .tar.
        tmp = BASE_TAR.with_name(BASE_TAR.stem + ".partial.tar")
        run(["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", str(tmp)])
        tmp.rename(BASE_TAR)
    if run(["podman", "image", "exists", BASE_IMAGE], check=False, env=env).returncode != 0:
        run(["podman", "import", str(BASE_TAR), BASE_IMAGE], env=env)


def build_image(env, cairn):
    """The Dockerfile's runtime stage, with this checkout's binaries, in a context of its own."""
    ctx = Path(tempfile.mkdtemp(prefix="cairn-image-"))
    try:
        (ctx / "k8s").mkdir()
        shutil.copy(ROOT / "k8s" / "Dockerfile", ctx / "k8s" / "Dockerfile")
        img = ctx / "target" / "image"
        img.mkdir(parents=True)
        shutil.copy(cairn, img / "cairn")
        shutil.copy(shutil.which("rclone") or fail("rclone is not installed"), img / "rclone")
        shutil.copy(ROOT / "testdata" / "fake-proton-drive" / "proton-drive", img / "proton-drive")
        started = time.time()
        run(["podman", "build", "--isolation", "chroot", "--network", "host", "-f", "k8s/Dockerfile",
             "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--build-arg", "BINARIES=binaries-local",
             "-t", IMAGE, "."], cwd=ctx, env=env)
        size = run(["podman", "image", "inspect", IMAGE, "--format", "{{.Size}}"], env=env).stdout.strip()
        print(f"pod-check: built {IMAGE} from k8s/Dockerfile in {time.time() - started:.0f} s, "
              f"{int(size) / 1e6:.0f} MB (a debug cairn binary: the release image carries a smaller one)")
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


class Prometheus:
    """A real Prometheus (Debian's) scraping the test's Pushgateway with honor_labels, loaded
    with k8s/monitoring/rules.yaml as it ships but for `for:` (0 s here: the test cannot wait
    minutes), evaluating every second."""

    def __init__(self, work, gateway_port, data=None):
        import yaml
        self.dir = work / ("prometheus" if data is None else "prometheus-history")
        self.dir.mkdir()
        rules = yaml.safe_load((ROOT / "k8s" / "monitoring" / "rules.yaml").read_text())
        for g in rules["groups"]:
            for r in g["rules"]:
                r.pop("for", None)
        (self.dir / "rules.yaml").write_text(yaml.safe_dump(rules))
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(self.dir / "rules.yaml")]}
        if gateway_port is not None:
            config["scrape_configs"] = [{"job_name": "pushgateway", "honor_labels": True,
                                         "static_configs": [{"targets": [f"127.0.0.1:{gateway_port}"]}]}]
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = deploy_test.free_port()
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={data or self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def api(self, path):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/{path}", timeout=10) as r:
            return json.loads(r.read())["data"]

    def firing(self):
        """The names of the alerts firing now."""
        try:
            return {a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"}
        except OSError:
            return set()

    def wait(self, cond, what, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.5)
        fail(f"Prometheus: {what} (firing: {sorted(self.firing())})")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Pods:
    """Runs a CronJob's pod template as podman containers, as the kubelet would."""

    def __init__(self, objs, work, env, secrets):
        self.objs = objs
        self.work = work
        self.env = env
        self.secrets = secrets
        self.configmaps = {}
        for o in objs.values():
            if o["kind"] == "ConfigMap":
                d = work / "configmaps" / o["metadata"]["name"]
                d.mkdir(parents=True, exist_ok=True)
                for k, v in o["data"].items():
                    (d / k).write_text(v)
                self.configmaps[o["metadata"]["name"]] = d

    def pvc_dir(self, claim):
        """A PVC's directory: owned by the pod's fsGroup with the group bit set, as the kubelet
        prepares a volume for `fsGroup` (the share's claim is made by the test itself)."""
        return self.work / "pvc" / claim

    def volume_args(self, pod, container):
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        args = []
        for m in container.get("volumeMounts", []):
            v = vols[m["name"]]
            ro = m.get("readOnly", False)
            if "configMap" in v:
                args += ["-v", f"{self.configmaps[v['configMap']['name']]}:{m['mountPath']}:ro"]
            elif "emptyDir" in v:
                size = v["emptyDir"].get("sizeLimit", "1Gi")
                args += ["--tmpfs", f"{m['mountPath']}:rw,size={size.replace('Gi', 'g').replace('Mi', 'm')},mode=1777"]
            elif "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                ro = ro or v["persistentVolumeClaim"].get("readOnly", False)
                args += ["-v", f"{self.pvc_dir(claim)}:{m['mountPath']}:{'ro' if ro else 'rw'}"]
            else:
                fail(f"a volume of a kind this test does not know: {v}")
        return args

    def env_args(self, container, secrets=None):
        secrets = secrets or self.secrets
        args = []
        cpu = container["resources"]["limits"]["cpu"]
        for e in container.get("env", []):
            if "value" in e:
                val = e["value"]
            elif "secretKeyRef" in e["valueFrom"]:
                ref = e["valueFrom"]["secretKeyRef"]
                val = secrets[ref["name"]][ref["key"]]
            elif "resourceFieldRef" in e["valueFrom"]:
                millis = int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)
                val = str(math.ceil(millis / 1000))
            else:
                fail(f"an env source this test does not know: {e}")
            args += ["-e", f"{e['name']}={val}"]
        return args

    def security_args(self, pod, container):
        psc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        gid = csc.get("runAsGroup", psc.get("runAsGroup", uid))
        if uid in (None, 0) or not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            fail(f"{container['name']} would run as root")
        args = ["--user", f"{uid}:{gid}"]
        for g in psc.get("supplementalGroups", []) + ([psc["fsGroup"]] if "fsGroup" in psc else []):
            args += ["--group-add", str(g)]
        if csc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if csc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if csc.get("capabilities", {}).get("drop") == ["ALL"]:
            args += ["--cap-drop", "ALL"]
        # seccompProfile RuntimeDefault: podman's default profile, which it applies unless told not to.
        return args

    def job(self, cron_name, extra_args=None, before_main=None, secrets=None):
        """Runs the CronJob's pod: init containers in order, then its container. Returns the
        list of (container name, exit code, output)."""
        cron = self.objs[f"CronJob/{cron_name}"]
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if pod.get("automountServiceAccountToken") is not False:
            fail(f"{cron_name} mounts a service account token")
        results = []
        for kind, c in [("init", c) for c in pod.get("initContainers", [])] + [("main", c) for c in pod["containers"]]:
            if kind == "main" and before_main:
                before_main()
            args = list(c.get("args", []))
            if kind == "main" and extra_args:
                args += extra_args
            cmd = (["podman", "run", "--rm", "--network", "host", "--name", f"{cron_name}-{c['name']}-{os.getpid()}"]
                   + self.security_args(pod, c) + self.volume_args(pod, c) + self.env_args(c, secrets)
                   + ["--entrypoint", c["command"][0], c["image"]] + c["command"][1:] + args)
            r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=900)
            results.append((c["name"], r.returncode, r.stdout + r.stderr))
            if r.returncode != 0:
                break
        return results


def expect_ok(results, what):
    for name, code, out in results:
        if code != 0:
            fail(f"{what}: the container {name} exited {code}:\n{out[-3000:]}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cairn = Path(sys.argv[1])
    ensure_podman()
    for k in ("CAIRN_S3_TEST_ENDPOINT", "CAIRN_S3_TEST_BUCKET", "CAIRN_S3_TEST_EXPORTS_BUCKET"):
        if k not in os.environ:
            if os.environ.get("CI") == "true":
                fail("CI=true but no S3 test server (scripts/s3-server.sh)")
            print("pod-check: skipping: no S3 test server")
            return
    env = podman_env()
    started = time.time()
    base_image(env)
    build_image(env, cairn)
    work = Path(tempfile.mkdtemp(prefix="cairn-pods-"))
    os.chmod(work, 0o755)
    gw, port = deploy_test.start_pushgateway()
    try:
        settings = {"image": IMAGE, "supplementalGroups": [SHARE_GROUP],
                    "pushgateway": f"http://127.0.0.1:{port}"}
        raw = render.evaluate(f"{{ cairn = builtins.fromJSON ''{json.dumps(settings)}''; }}")
        objs = {f"{o['kind']}/{o['metadata']['name']}": o for kind in raw.values() for o in kind.values()}
        prefix = f"pods-{os.getpid()}-{time.time_ns()}"
        cm = objs[f"ConfigMap/{NAME}-cairn"]
        try:
            cm["data"]["cairn.toml"] = point_at_test_server(cm["data"]["cairn.toml"], prefix)
        except ValueError as e:
            fail(str(e))
        key = {"AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
               "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"]}
        secrets = {o["metadata"]["name"]: key for o in objs.values() if o["kind"] == "Secret"}
        pods = Pods(objs, work, env, secrets)
        share = prepare_volumes(pods, objs)
        prom = Prometheus(work, port)
        try:
            nights(pods, share, port, prefix)
            alerts(pods, prom)
        finally:
            prom.stop()
        stale_alerts(work)
        print(f"pod-check: done in {time.time() - started:.0f} s")
    finally:
        gw.kill()
        gw.wait()
        subprocess.run(["chmod", "-R", "u+rwX", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def prepare_volumes(pods, objs):
    """Every PVC the pods mount, as a directory: the share owned by uid and gid 3000 (folders
    0750, files 0640, as the services that write it leave it), the others by the pods' fsGroup."""
    for o in objs.values():
        if o["kind"] == "PersistentVolumeClaim":
            d = pods.pvc_dir(o["metadata"]["name"])
            d.mkdir(parents=True)
            os.chown(d, 65532, 65532)
            os.chmod(d, 0o2775)
    share = pods.pvc_dir("cephfs-shared-storage-root")
    share.mkdir(parents=True)
    (share / "notetaking" / "projects").mkdir(parents=True)
    (share / "images" / "2026").mkdir(parents=True)
    (share / "backup").mkdir()
    (share / "notetaking" / "todo.md").write_text("- renew the domain\n" * 300)
    (share / "notetaking" / "projects" / "cairn.md").write_text("# cairn\n" * 50)
    (share / "images" / "2026" / "cat.raw").write_bytes(os.urandom(2 << 20))
    (share / "backup" / "router.json").write_text('{"ssid": "home"}\n')
    for p in [share] + sorted(share.rglob("*")):
        os.chown(p, 3000, SHARE_GROUP)
        os.chmod(p, 0o750 if p.is_dir() else 0o640)
    os.chmod(share, 0o755)
    return share


def aws(*args):
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    env["AWS_DEFAULT_REGION"] = os.environ.get("CAIRN_S3_TEST_REGION", "garage")
    return run(["aws", "--endpoint-url", os.environ["CAIRN_S3_TEST_ENDPOINT"], *args], env=env)


def nights(pods, share, port, prefix):
    exports = f"s3://{os.environ['CAIRN_S3_TEST_EXPORTS_BUCKET']}/{prefix}"
    days = ["2026-12-05", "2026-12-06", "2026-12-07"]
    for i, day in enumerate(days):
        if i == 2:
            p = share / "notetaking" / "todo.md"
            os.chmod(p, 0o660)
            with open(p, "a") as f:
                f.write("- third night\n")
            os.chmod(p, 0o640)
        expect_ok(pods.job(NAME, extra_args=["--date", day]), f"the backup CronJob, {day}")
        listing = aws("s3", "ls", f"{exports}/{day}/").stdout
        for suffix in (".tar.zst", ".tar.zst.sha256", ".manifest.json"):
            if f"shared-{day}{suffix}" not in listing:
                fail(f"{day}: shared-{day}{suffix} is not in the bucket:\n{listing}")
        report = json.loads(aws("s3", "cp", f"{exports}/_reports/{day}/run.json", "-").stdout)
        if report["exit_code"] != 0 or report["backup"]["summary"]["files"] != 4:
            fail(f"{day}: the run report says {report['exit_code']}, {report['backup']['summary']['files']} files")
        if i == 1 and report["backup"]["summary"]["bytes_read"] != 0:
            fail(f"{day}: an unchanged night read {report['backup']['summary']['bytes_read']} bytes")
    print("pod-check: three nights of the backup CronJob's pod (preflight, init, run) as uid 65532 "
          "with the share's group, read-only root, no capabilities: each day's objects in the bucket")
    # The third day's archive, downloaded and checked as an operator would.
    d = Path(tempfile.mkdtemp(prefix="cairn-day-"))
    try:
        aws("s3", "cp", "--recursive", f"{exports}/{days[2]}/", str(d))
        run(["sha256sum", "-c", f"shared-{days[2]}.tar.zst.sha256"], cwd=d)
        names = run(["tar", "--zstd", "-tf", f"shared-{days[2]}.tar.zst"], cwd=d).stdout.split()
        if "notetaking/projects/cairn.md" not in names:
            fail(f"the archive lacks a file: {names}")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("pod-check: the third day's archive passes sha256sum -c and lists every file with GNU tar")
    text = scrape(port)
    if metric(text, "cairn_backup_success", "backup") != 1.0 or metric(text, "cairn_export_success", "export") != 1.0:
        fail(f"the Pushgateway has no success of the night:\n{text[:3000]}")

    expect_ok(pods.job("shared-subfolders-retention"), "the retention CronJob")
    if metric(scrape(port), "cairn_retention_success", "retention") != 1.0:
        fail("the retention job pushed no success")
    print("pod-check: the retention CronJob's pod (preflight, exports prune, prune) with the deleting key")

    # The Proton login: the pod prints the URL and waits; the "browser" approves.
    session = pods.pvc_dir(f"{NAME}-proton-session")
    approve = session / "fake-approve"

    def approve_soon():
        # The login container starts after this returns: approve once it is waiting.
        import threading

        def later():
            for _ in range(600):
                if (session / "fake-calls.log").exists():
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            approve.write_text("")
            os.chown(approve, 65532, 65532)
        threading.Thread(target=later, daemon=True).start()

    results = pods.job("shared-subfolders-proton-bootstrap", before_main=approve_soon)
    expect_ok(results, "the Proton login")
    said = results[-1][2]
    if "https://account.proton.me/desktop/login" not in said or "session ok" not in said:
        fail(f"the login pod did not print the URL and end with its session:\n{said}")
    mode = os.stat(session / "auth-session.json").st_mode & 0o777
    if mode != 0o600:
        fail(f"the session file is {mode:o}, not 600")
    results = pods.job("shared-subfolders-proton-sync")
    expect_ok(results, "the Proton sync")
    remote = session / "fake-remote" / "my-files" / "Backups" / "homelab" / "shared-archives"
    for day in days:
        if not (remote / day / f"shared-{day}.tar.zst").exists():
            fail(f"{day} is not on the remote after the sync")
    if metric(scrape(port), "cairn_offsite_success", "offsite") != 1.0:
        fail("the offsite job pushed no success")
    print("pod-check: the Proton login pod printed the sign-in URL and kept a 0600 session; the sync pod uploaded the three days")

    restore = pods.pvc_dir(f"{NAME}-restore")
    expect_ok(pods.job("shared-subfolders-restore-drill"), "the restore drill")
    got = sorted(str(p.relative_to(restore)) for p in restore.rglob("*") if p.is_file())
    want = sorted(str(p.relative_to(share)) for p in (share / "notetaking").rglob("*") if p.is_file())
    if got != want:
        fail(f"the restore drill restored {got}, the share holds {want}")
    for rel in want:
        if (restore / rel).read_bytes() != (share / rel).read_bytes():
            fail(f"the restore drill restored {rel} with other content")
    print("pod-check: the restore drill's pod restored notetaking/ onto its volume as the share holds it, then checked a tenth of the packs")



def alerts(pods, prom):
    """The shipped rules, evaluated by a real Prometheus on what the pods pushed: a night with a
    wrong key fires CairnBackupFailed and a good night resolves it; a retention with a key that
    may not delete fires CairnRetentionFailed and a good one resolves it."""
    prom.wait(lambda: prom.api("query?query=cairn_backup_success")["result"], "no cairn_backup_success scraped")
    # Every panel of the dashboard has data after these nights.
    import urllib.parse
    import yaml
    board = json.loads((ROOT / "k8s" / "monitoring" / "dashboard.json").read_text())

    def without_data():
        return [f"{panel['title']}: {t['expr']}" for panel in board["panels"] for t in panel["targets"]
                if not prom.api("query?query=" + urllib.parse.quote(t["expr"]))["result"]]
    # The last pods pushed moments ago: their series appear within a few scrapes, not at once.
    deadline = time.time() + 30
    while (empty := without_data()) and time.time() < deadline:
        time.sleep(1)
    if empty:
        fail("dashboard queries without data:\n" + "\n".join(empty))
    panels = yaml.safe_load((ROOT / "k8s" / "monitoring" / "panels.yaml").read_text())["panels"]
    print(f"pod-check: every query of the dashboard's {len(panels)} panels returns data from the real Prometheus")
    # After good nights no rule fires (each has been evaluated a few times by now).
    time.sleep(3)
    if prom.firing():
        fail(f"alerts fire after good nights: {sorted(prom.firing())}")
    wrong = {name: dict(v, AWS_SECRET_ACCESS_KEY="not-the-key") for name, v in pods.secrets.items()}
    results = pods.job(NAME, extra_args=["--date", "2026-12-07"], secrets=wrong)
    if results[-1][1] == 0:
        fail("a night with a wrong key succeeded")
    prom.wait(lambda: "CairnBackupFailed" in prom.firing(), "CairnBackupFailed did not fire after a failing night")
    expect_ok(pods.job(NAME, extra_args=["--date", "2026-12-07"]), "the night after the failing one")
    prom.wait(lambda: "CairnBackupFailed" not in prom.firing(), "CairnBackupFailed did not resolve after a good night")
    print("pod-check: a real Prometheus, loaded with the shipped rules: a night with a wrong key fired CairnBackupFailed, the next good night resolved it")
    ro = {name: {"AWS_ACCESS_KEY_ID": os.environ["CAIRN_S3_TEST_RO_KEY_ID"],
                 "AWS_SECRET_ACCESS_KEY": os.environ["CAIRN_S3_TEST_RO_SECRET"]} for name in pods.secrets}
    results = pods.job("shared-subfolders-retention", secrets=ro)
    if results[-1][1] == 0:
        fail("a retention with a read-only key succeeded")
    prom.wait(lambda: "CairnRetentionFailed" in prom.firing(), "CairnRetentionFailed did not fire after a failing retention")
    expect_ok(pods.job("shared-subfolders-retention"), "the retention after the failing one")
    prom.wait(lambda: "CairnRetentionFailed" not in prom.firing(), "CairnRetentionFailed did not resolve after a good retention")
    print("pod-check: a retention with a read-only key fired CairnRetentionFailed, the next good one resolved it")


# What the rules that no live night can show in seconds need (days of silence, a week's growth,
# kube-state-metrics' series), as series backfilled with promtool into a Prometheus of their own,
# and the alerts they must fire.
def history(now):
    ago = lambda h: now - h * 3600  # noqa: E731
    cairn = 'job="cairn",instance="shared-subfolders"'
    recent = [now - 60 * m for m in range(15, -1, -1)]
    week_ago = [now - 7 * 86400 + 60 * m for m in range(-10, 11)]
    series = [
        (f'cairn_backup_last_success_timestamp_seconds{{{cairn},stage="backup"}}', recent, lambda t: ago(30)),
        (f'cairn_export_last_success_timestamp_seconds{{{cairn},stage="export"}}', recent, lambda t: ago(30)),
        (f'cairn_offsite_last_success_timestamp_seconds{{{cairn},stage="offsite"}}', recent, lambda t: ago(60)),
        (f'cairn_offsite_failed_archives{{{cairn},stage="offsite"}}', recent, lambda t: 2),
        (f'cairn_offsite_failures{{{cairn},stage="offsite",reason="session_expired"}}', recent, lambda t: 1),
        (f'cairn_offsite_remote_bytes{{{cairn},stage="offsite"}}', recent, lambda t: 950),
        (f'cairn_offsite_quota_bytes{{{cairn},stage="offsite"}}', recent, lambda t: 1000),
        (f'cairn_backup_store_bytes{{{cairn},stage="backup"}}', week_ago + recent, lambda t: 100 if t < now - 86400 else 300),
        (f'cairn_export_total_bytes{{{cairn},stage="export"}}', week_ago + recent, lambda t: 200 if t < now - 86400 else 700),
        (f'cairn_export_capacity_bytes{{{cairn},stage="export"}}', recent, lambda t: 1000),
        (f'cairn_retention_kept_days{{{cairn},stage="retention"}}', recent, lambda t: 14),
        (f'cairn_retention_keep_days{{{cairn},stage="retention"}}', recent, lambda t: 14),
        ('kube_cronjob_status_last_successful_time{namespace="apps",cronjob="shared-subfolders-backup"}', recent, lambda t: ago(30)),
        ('kube_cronjob_status_last_successful_time{namespace="apps",cronjob="shared-subfolders-retention"}', recent, lambda t: ago(30)),
        ('kube_cronjob_status_last_successful_time{namespace="apps",cronjob="shared-subfolders-proton-sync"}', recent, lambda t: ago(60)),
        ('kube_job_failed{namespace="apps",job_name="shared-subfolders-retention-1",condition="true"}', recent, lambda t: 1),
        ('kube_job_status_start_time{namespace="apps",job_name="shared-subfolders-retention-1"}', recent, lambda t: ago(1)),
    ]
    expected = {"CairnBackupStale", "CairnArchiveMissing", "CairnOffsiteStale", "CairnOffsiteFailing",
                "CairnOffsiteNeedsAction", "CairnOffsiteQuotaNearlyFull", "CairnStoreGrowing",
                "CairnExportsGrowing", "CairnServerNearlyFull", "CairnBackupCronJobStale",
                "CairnRetentionCronJobStale", "CairnOffsiteCronJobStale", "CairnJobFailed"}
    return series, expected


def stale_alerts(work):
    """The rules about time and kube-state-metrics, fired by a real Prometheus on backfilled
    series: each hole the rules were written for is seen to fire."""
    now = int(time.time())
    series, expected = history(now)
    lines = []
    by_name = {}
    for sel, times, value in series:
        by_name.setdefault(sel.split("{")[0], []).append((sel, times, value))
    for name, group in by_name.items():
        lines.append(f"# TYPE {name} gauge")
        for sel, times, value in group:
            lines += [f"{sel} {value(t)} {t}" for t in sorted(times)]
    lines.append("# EOF")
    om = work / "history.om"
    om.write_text("\n".join(lines) + "\n")
    data = work / "history-tsdb"
    run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)])
    prom = Prometheus(work, None, data=data)
    try:
        prom.wait(lambda: expected <= prom.firing(), f"not every alert fired on the backfilled history: missing {sorted(expected - prom.firing())}")
    finally:
        prom.stop()
    print(f"pod-check: on backfilled history a real Prometheus fired each of {len(expected)} rules about silence, growth and kube-state-metrics")


if __name__ == "__main__":
    main()
