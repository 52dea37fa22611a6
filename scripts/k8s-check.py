#!/usr/bin/env python3
"""Offline checks of the deployment (k8s/), run by scripts/test.sh:

1. the manifests are the kubenix module's evaluation (`nix-instantiate --eval --strict --json`);
2. `kubernetes-validate --strict` passes for every Kubernetes version the module supports (1.27,
   CronJob `timeZone`, and later), for the example render and for one with every option on;
3. the module's settings: each way of giving them (the function's `cairn`, `_module.args.cairn`,
   kubenix's `kubernetes.namespace`) changes exactly the objects and fields it should, and an
   unknown setting or a value of the wrong kind stops the evaluation with one line naming it;
4. no manifest holds a literal secret or a placeholder, a Secret only vals references (the scan
   is first shown to catch each), and every secretKeyRef names a Secret and key the module
   defines, or with `secretsFrom = "existing"` the configured names; no code block of the docs
   puts a secret on a command line (that lint, too, is first shown to catch each kind);
5. with CAIRN_KUBENIX_SRC and CAIRN_NIXPKGS_LIB set (a kubenix checkout, nixpkgs' lib), the
   same module in a real kubenix evaluation: the objects the plain evaluation gives, the same
   overrides, the one-line errors, and with `kubernetes.enableHashedNames` every reference
   following the hashed ConfigMap and Secret names;
6. `promtool check rules` and `promtool test rules` pass, and the Grafana alerts are generated
   from the same rules, their expressions valid PromQL too;
7. the Dockerfile passes hadolint (and builds, where a container engine runs);
8. the backup CronJob's own init containers (preflight, init) and command, arguments and
   environment, read from the manifest, run against the S3 test server and a sample tree, with
   a real Pushgateway that receives the metrics of a good night and of a failing one; the restore
   drill of docs/OPERATIONS.md runs verbatim, with the read-only key, against what that night
   published.
Prints one line per check; exits 1 at the first failure.
"""

import datetime
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zoneinfo
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy_test  # noqa: E402
from deploy_test import metric, point_at_test_server, scrape  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ in k8s/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "k8s"))
import render  # noqa: E402  (k8s/render.py, for its example image)

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
MANIFEST = K8S / "shared-subfolders-backup.yaml"
MODULE = K8S / "kubenix" / "shared-subfolders-backup.nix"
KUBENIX_EVAL = K8S / "kubenix" / "eval-with-kubenix.nix"
# 1.27 is the first with CronJob `timeZone` (the module's minimum, docs/OPERATIONS.md).
VERSIONS = ["1.27.0", "1.28.0", "1.29.0", "1.30.0", "1.31.0"]
IMAGE = render.EXAMPLE_IMAGE  # the example render's


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"k8s-check: {' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r


SECRET_NAME = re.compile(r"(PASS|SECRET|TOKEN|KEY|CREDENTIAL)", re.I)
PLACEHOLDER = re.compile(r"(?i)(changeme|change[-_ ]me|replace[-_ ]?me|placeholder|\btodo\b|\bxxx+\b|<[a-z_-]+>|secret_access_key\s*=|password\s*=)")
# A vals reference (`make manifests` pipes the manifests through `vals eval`): ref+sops://FILE#/PATH.
# Only sops: another provider (`ref+echo://…`) would turn the reference itself into the secret.
VALS_REF = re.compile(r"^ref\+sops://[^\s#]+#/\S+$")
# A URL with a password in it, or a connection string's `pass=…` (rclone's `:protondrive,pass=…:`).
URL_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)
INLINE_SECRET = re.compile(r"(?i)(?:^|[,:;\s])(pass|password|token|secret|otp)=[^,\s:;]+")


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
        elif isinstance(obj, str) and URL_USERINFO.search(obj):
            problems.append(f"{path}: a URL with a password in it")
        elif isinstance(obj, str) and INLINE_SECRET.search(obj):
            problems.append(f"{path}: a connection string with {INLINE_SECRET.search(obj).group(1)}=")

    for d in docs:
        where = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        if d.get("kind") == "Secret":
            # vals fills references in stringData only; base64 `data` would be a literal.
            for k in d.get("data") or {}:
                problems.append(f"{where}: data.{k} holds a literal value (only vals references, in stringData)")
            for k, v in (d.get("stringData") or {}).items():
                if not (isinstance(v, str) and VALS_REF.match(v)):
                    problems.append(f"{where}: stringData.{k} is a literal value, not a ref+ reference")
        walk(d, where)
    return problems


def check_secrets(variants):
    """`variants`: name -> the manifests of one evaluation (the example render, the other modes)."""
    docs = variants["the example render"]
    # The scan must be able to fail: a literal env value, a literal in a Secret's stringData and
    # in its data, and a placeholder are each caught.
    bad = json.loads(json.dumps(docs))
    for d in bad:
        for c in d.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            c["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "hunter2hunter2"})
    secrets = [d for d in bad if d.get("kind") == "Secret"]
    assert len(secrets) == 2, "the example render has no Secrets to spoil"
    secrets[0]["stringData"]["AWS_SECRET_ACCESS_KEY"] = "hunter2hunter2"
    secrets[1]["data"] = {"AWS_SECRET_ACCESS_KEY": "aHVudGVyMg=="}
    bad.append({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "password = changeme"}})
    bad.append({"kind": "ConfigMap", "metadata": {"name": "y"}, "data": {
        "b": 'pushgateway = "http://cairn:hunter2@pgw.monitoring.svc:9091"',
        "c": 'remote = ":protondrive,username=me,pass=S3cr3tS3cr3t:Backups"'}})
    echo = json.loads(json.dumps(secrets[0]))
    echo["metadata"]["name"] = "echoed"
    echo["stringData"] = {"AWS_SECRET_ACCESS_KEY": "ref+echo://wJalrXUtnFEMI"}
    echo.pop("data", None)
    bad.append(echo)
    caught = secret_problems(bad)
    for want in ("has a literal value", "stringData.AWS_SECRET_ACCESS_KEY is a literal value",
                 "data.AWS_SECRET_ACCESS_KEY holds a literal value", "placeholder",
                 "a URL with a password in it", "a connection string with pass=",
                 "Secret/echoed: stringData.AWS_SECRET_ACCESS_KEY is a literal value"):
        assert any(want in p for p in caught), (want, caught)
    for name, variant in variants.items():
        problems = secret_problems(variant)
        if problems:
            sys.exit(f"k8s-check: {name}: " + "; ".join(problems))
    print(f"k8s-check: no literal secret or placeholder in the manifests ({', '.join(variants)}); the Secrets hold only vals references")


def pods(docs):
    for d in docs:
        pod = d.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
        if pod:
            yield d, pod


def secret_ref_problems(docs, allowed):
    """Every secretKeyRef must name a Secret and key of `allowed` ({name: {keys}})."""
    problems = []
    for d, pod in pods(docs):
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in allowed.get(ref["name"], set()):
                    problems.append(f"{d['metadata']['name']}/{c['name']} reads {ref['name']}/{ref['key']}, "
                                    "which is not a Secret and key the module defines")
            for src in c.get("envFrom", []):
                if "secretRef" in src:
                    problems.append(f"{d['metadata']['name']}/{c['name']} takes envFrom a Secret")
    return problems


def defined_secrets(docs):
    return {d["metadata"]["name"]: set(d.get("stringData") or {}) | set(d.get("data") or {})
            for d in docs if d.get("kind") == "Secret"}


def check_secret_refs(sops_docs, existing_docs, existing_names):
    # The check must be able to fail: a key the Secret does not have is caught.
    bad = json.loads(json.dumps(sops_docs))
    next(iter(pods(bad)))[1]["containers"][0]["env"][-1]["valueFrom"]["secretKeyRef"]["key"] = "secret-access-key"
    assert secret_ref_problems(bad, defined_secrets(bad)), "a wrong key was not caught"
    problems = secret_ref_problems(sops_docs, defined_secrets(sops_docs))
    if not defined_secrets(sops_docs):
        problems.append("secretsFrom = \"sops\" defines no Secret")
    aws = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    if defined_secrets(existing_docs):
        problems.append("secretsFrom = \"existing\" still defines Secrets")
    problems += secret_ref_problems(existing_docs, {n: aws for n in existing_names})
    if problems:
        sys.exit("k8s-check: " + "; ".join(problems))
    print("k8s-check: every secretKeyRef names a Secret and key the module defines (sops), or the configured Secrets (existing)")


# Secrets on command lines in the docs: what a reader would paste into a shell.
MC_POSITIONAL = {("mc", "alias", "set"): 4, ("mc", "config", "host", "add"): 4, ("mc", "admin", "user", "add"): 3}
MC_VALUE_FLAGS = {"--api", "--path", "--lookup", "--config-dir", "-C"}
SECRET_FLAG = re.compile(r"^--(secret|secret-key|password|from-literal)(=|$)")
# NAME=value with a secret's name and a value that is not a $variable or $(command): a `_FILE`
# name holds a path, not a secret.
SECRET_ASSIGN = re.compile(r"(?<![A-Za-z0-9_])([A-Za-z0-9_]*(?:PASSWORD|SECRET|TOKEN|password|secret|token)[A-Za-z0-9_]*)=(?![\"']?\$)[\"']?[^\s\"'$]")
# The value of a switch: `1`, `true`, … followed by the end of the word.
SWITCH = re.compile(r"(?i)(1|0|true|false|yes|no|on|off)(\s|$|[`'\")])")
# `pass=…` and the like as an argument (rclone config create REMOTE protondrive pass=…).
SECRET_ARG = re.compile(r"(?i)^(pass|password|token|secret|otp|[a-z_]*secret[a-z_]*)=(?![\"']?\$)\S")


def code_spans(text):
    """The fenced code blocks and inline code spans of a Markdown text."""
    fence = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1", re.S | re.M)
    spans = [m.group(2) for m in fence.finditer(text)]
    rest = fence.sub("", text)
    spans += [m for m in re.findall(r"`([^`]+)`", rest) if "\n\n" not in m]
    return spans


def command_line_secrets(code):
    """The commands in a piece of code that put a secret into argv (or history): what is wrong."""
    problems = []
    for line in code.replace("\\\n", " ").splitlines():
        # A `_FILE` name holds a path; a switch (`PROTON_DRIVE_UNSAFE_SECRETS=1`) no secret.
        if any(not m.group(1).endswith("_FILE") and not SWITCH.match(line[m.end(1) + 1:])
               for m in SECRET_ASSIGN.finditer(line)):
            problems.append(f"a literal secret assigned on a command line: {line.strip()[:80]!r}")
        try:
            lex = shlex.shlex(line, posix=True, punctuation_chars=True)
            lex.whitespace_split = True
            lex.commenters = "#"
            tokens = list(lex)
        except ValueError:
            tokens = line.split()
        cmd = []
        for tok in tokens + [";"]:
            if tok and set(tok) <= set(";|&()"):
                problems += command_problems(cmd, line)
                cmd = []
            else:
                cmd.append(tok)
    return problems


def command_problems(cmd, line):
    while cmd and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", cmd[0]) or cmd[0] in ("sudo", "env", "command", "exec")):
        cmd = cmd[1:]
    problems = []
    for prefix, limit in MC_POSITIONAL.items():
        if tuple(cmd[:len(prefix)]) == prefix:
            args, skip = [], False
            for a in cmd[len(prefix):]:
                if skip:
                    skip = False
                elif a.startswith("-"):
                    skip = a in MC_VALUE_FLAGS
                else:
                    args.append(a)
            if len(args) >= limit:
                problems.append(f"{' '.join(prefix)} with the secret key as an argument (leave it out: mc asks): {line.strip()[:80]!r}")
    if cmd[:2] == ["aws", "configure"] and any("secret" in a.lower() for a in cmd[2:]):
        problems.append(f"aws configure with a secret as an argument: {line.strip()[:80]!r}")
    if cmd[:1] == ["kubectl"] and "create" in cmd and cmd[cmd.index("create") + 1:][:1] == ["secret"]:
        problems.append(f"kubectl create secret (the module defines the Secrets; GitOps applies them): {line.strip()[:80]!r}")
    for a in cmd:
        if SECRET_FLAG.match(a):
            problems.append(f"a secret as an option ({a.split('=')[0]}): {line.strip()[:80]!r}")
        elif SECRET_ARG.match(a):
            problems.append(f"a secret as an argument ({a.split('=')[0]}=): {line.strip()[:80]!r}")
        elif URL_USERINFO.search(a):
            problems.append(f"a URL with a password as an argument: {line.strip()[:80]!r}")
    if cmd[:1] == ["curl"]:
        for i, a in enumerate(cmd[:-1]):
            if a in ("-u", "--user") and ":" in cmd[i + 1] and "$" not in cmd[i + 1]:
                problems.append(f"curl with a password as an argument: {line.strip()[:80]!r}")
    if cmd[:1] == ["printf"] and "mc admin user add" in line and "$" not in " ".join(cmd[1:]):
        problems.append(f"printf of literal keys for mc admin user add: {line.strip()[:80]!r}")
    return problems


def check_docs_secrets():
    # The lint must be able to fail: each way of putting a secret on a command line is caught,
    # and the ways the docs use instead are not.
    bad = [
        "mc alias set pi http://10.10.10.209:9000 minioadmin s3cr3tpassw0rd",
        "mc admin user add pi cairn-backup s3cr3tpassw0rd",
        "kubectl -n apps create secret generic s3 --from-literal=AWS_SECRET_ACCESS_KEY=abc",
        "aws configure set aws_secret_access_key abcdef",
        "AWS_SECRET_ACCESS_KEY=abcdef aws s3 ls",
        "export AWS_SECRET_ACCESS_KEY='abcdef'",
        "mc admin user svcacct add pi cairn-backup --secret-key abcdef",
        "kubectl -n apps create secret generic s3 --from-file=AWS_SECRET_ACCESS_KEY=./secret",
        "rclone config create proton protondrive username=me pass=hunter2hunter2",
        "curl -u admin:hunter2 http://pgw.monitoring.svc:9091/metrics",
        "printf 'cairn-backup\\nhunter2hunter2\\n' | mc admin user add pi",
        "aws_secret_access_key=abcdef aws s3 ls",
    ]
    for cmd in bad:
        assert command_line_secrets(f"```bash\n{cmd}\n```"), f"not caught: {cmd}"
    good = [
        "mc alias set pi http://10.10.10.209:9000",
        "printf '%s\\n%s\\n' \"$(get nightly aws_access_key_id)\" \"$(get nightly aws_secret_access_key)\" | mc admin user add pi",
        "mc admin user add pi cairn-drill",
        'export AWS_SECRET_ACCESS_KEY="$(sops -d --extract \'["a"]["b"]\' secrets/k8s-secrets.enc.yaml)"',
        "read -rs AWS_SECRET_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY_FILE=/run/secrets/key cairn run",
        "PROTON_DRIVE_UNSAFE_SECRETS=1 proton-drive filesystem list /my-files",
    ]
    for cmd in good:
        assert not command_line_secrets(cmd), (cmd, command_line_secrets(cmd))
    problems = []
    for doc in [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")):
        for span in code_spans(doc.read_text()):
            problems += [f"{doc.relative_to(ROOT)}: {p}" for p in command_line_secrets(span)]
    if problems:
        sys.exit("k8s-check: " + "; ".join(problems))
    print("k8s-check: no code in README.md or docs/*.md puts a secret on a command line (the lint catches each kind first)")


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


# ---- The module's settings ----------------------------------------------------------------------

def nix_literal(v):
    """A Python value as a Nix expression."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("${", "\\${")
    if isinstance(v, list):
        return "[ " + " ".join(nix_literal(x) for x in v) + " ]"
    return "{ " + " ".join(f"{json.dumps(k)} = {nix_literal(x)};" for k, x in v.items()) + " }"


def nix_eval(expr):
    r = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr], capture_output=True, text=True)
    return r.returncode, (json.loads(r.stdout) if r.returncode == 0 else None), r.stderr


def keyed(objs):
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objs}


def plain_eval(cairn=None, module_args=None, namespace=None):
    """The module alone, given its settings the ways the module system passes them: the function's
    `cairn` (an import's argument, kubenix's specialArgs), `config._module.args.cairn` and
    `config.kubernetes.namespace`. Returns (exit code, {kind/name: object}, stderr)."""
    args, config = {}, {}
    if cairn is not None:
        args["cairn"] = cairn
    if module_args is not None:
        config["_module"] = {"args": {"cairn": module_args}}
    if namespace is not None:
        config["kubernetes"] = {"namespace": namespace}
    if config:
        args["config"] = config
    rc, out, err = nix_eval(f"(import {MODULE} {nix_literal(args)}).kubernetes.resources")
    return rc, (keyed(o for kind in out.values() for o in kind.values()) if rc == 0 else None), err


def kubenix_available():
    return bool(os.environ.get("CAIRN_KUBENIX_SRC") and os.environ.get("CAIRN_NIXPKGS_LIB"))


def kubenix_eval(cairn=None, module_args=None, namespace=None, hashed=False):
    """The same through a real kubenix evaluation (k8s/kubenix/eval-with-kubenix.nix): its
    `kubernetes.objects`, kubenix's own annotations taken off."""
    extra, special = {}, {}
    if module_args is not None:
        extra["_module"] = {"args": {"cairn": module_args}}
    if namespace is not None or hashed:
        extra["kubernetes"] = {k: v for k, v in (("namespace", namespace), ("enableHashedNames", hashed)) if v}
    if cairn is not None:
        special["cairn"] = cairn
    rc, out, err = nix_eval(f"import {KUBENIX_EVAL} {{ extra = {nix_literal(extra)}; special = {nix_literal(special)}; }}")
    if rc != 0:
        return rc, None, err
    for o in out:
        notes = {k: v for k, v in o["metadata"].get("annotations", {}).items() if not k.startswith("kubenix/")}
        o["metadata"].pop("annotations", None)
        if notes:
            o["metadata"]["annotations"] = notes
    return rc, keyed(out), err


def evaluated(ev, **kw):
    rc, objs, err = ev(**kw)
    if rc != 0:
        sys.exit(f"k8s-check: evaluating the module with {kw} failed:\n{err}")
    return objs


def flatten(obj, path=""):
    if isinstance(obj, dict):
        if not obj:
            yield path, {}
        for k, v in obj.items():
            yield from flatten(v, f"{path}/{k}" if path else k)
    elif isinstance(obj, list):
        if not obj:
            yield path, []
        for i, v in enumerate(obj):
            yield from flatten(v, f"{path}/{i}")
    else:
        yield path, obj


def changed_paths(a, b):
    """Where two evaluations differ: object paths, down to the field (kind/name/spec/...)."""
    fa, fb = dict(flatten(a)), dict(flatten(b))
    missing = object()
    return {p for p in fa.keys() | fb.keys() if fa.get(p, missing) != fb.get(p, missing)}


def toml_lines_changed(a, b):
    key = "ConfigMap/shared-subfolders-backup-cairn"
    la, lb = a[key]["data"]["cairn.toml"].splitlines(), b[key]["data"]["cairn.toml"].splitlines()
    return sorted({x for x in la if x not in lb} | {x for x in lb if x not in la})


BACKUP = "CronJob/shared-subfolders-backup"
TOML = "ConfigMap/shared-subfolders-backup-cairn/data/cairn.toml"
NIGHTLY = "Secret/shared-subfolders-backup-s3-credentials"
RETENTION = "Secret/shared-subfolders-backup-retention-s3-credentials"


def override_cases(base):
    """(what, settings, the paths it must change, a check of the values) for each mechanism."""
    namespaces = {f"{k}/metadata/namespace" for k in base}
    cronjobs = [k for k in base if k.startswith("CronJob/")]
    secrets = {p for p, _ in flatten({k: v for k, v in base.items() if k.startswith("Secret/")})}
    return [
        ("the function's cairn (import argument, specialArgs)",
         dict(cairn={"image": IMAGE, "schedule": "15 2 * * *"}), {f"{BACKUP}/spec/schedule"},
         lambda o: o[BACKUP]["spec"]["schedule"] == "15 2 * * *"),
        ("_module.args.cairn beside the function's cairn",
         dict(cairn={"image": IMAGE}, module_args={"bucket": "other-bucket"}), {TOML},
         lambda o: toml_lines_changed(base, o) == ['bucket = "homelab-backup-shared-archives"', 'bucket = "other-bucket"']),
        ("_module.args.cairn alone",
         dict(module_args={"image": IMAGE, "timeZone": "UTC"}), {TOML} | {f"{k}/spec/timeZone" for k in cronjobs},
         lambda o: toml_lines_changed(base, o) == ['timezone = "Europe/Berlin"', 'timezone = "UTC"']),
        ("both, _module.args winning",
         dict(cairn={"image": IMAGE, "schedule": "15 2 * * *"}, module_args={"schedule": "45 3 * * *"}),
         {f"{BACKUP}/spec/schedule"}, lambda o: o[BACKUP]["spec"]["schedule"] == "45 3 * * *"),
        ("sopsKeys from both, merged key by key",
         dict(cairn={"image": IMAGE, "sopsKeys": {"nightlyAccessKeyId": "homelab/backup_id"}},
              module_args={"sopsKeys": {"retentionSecretAccessKey": "homelab/retention_secret"}}),
         {f"{NIGHTLY}/stringData/AWS_ACCESS_KEY_ID", f"{RETENTION}/stringData/AWS_SECRET_ACCESS_KEY"},
         lambda o: o[NIGHTLY]["stringData"]["AWS_ACCESS_KEY_ID"] == "ref+sops://secrets/k8s-secrets.enc.yaml#/homelab/backup_id"),
        ("kubenix's kubernetes.namespace",
         dict(cairn={"image": IMAGE}, namespace="media"), namespaces,
         lambda o: all(v["metadata"]["namespace"] == "media" for v in o.values())),
        ("cairn.namespace over kubenix's kubernetes.namespace",
         dict(cairn={"image": IMAGE, "namespace": "backup"}, namespace="media"), namespaces,
         lambda o: all(v["metadata"]["namespace"] == "backup" for v in o.values())),
        ("secretsFrom = \"existing\"",
         dict(cairn={"image": IMAGE, "secretsFrom": "existing"}), secrets,
         lambda o: not any(k.startswith("Secret/") for k in o)),
    ]


ERROR_CASES = [
    (dict(cairn={"image": IMAGE, "schedul": "0 2 * * *"}), '"schedul"', "unknown setting"),
    (dict(cairn={"image": IMAGE, "bucke": "b"}), '"bucke"', "unknown setting"),
    (dict(module_args={"image": IMAGE, "runAsUser": "1000"}), '"runAsUser"', "must be an integer, not a string"),
    (dict(cairn={"image": IMAGE, "networkPolicy": "yes"}), '"networkPolicy"', "must be a boolean"),
    (dict(cairn={"image": IMAGE, "sopsKeys": {"nightlyAccesKeyId": "a/b"}}), '"nightlyAccesKeyId"', "unknown key"),
    (dict(cairn={"image": IMAGE, "extraEnv": [{"name": "CAIRN_LOG", "value": 1}]}), '"extraEnv"', "must be a string, not an integer"),
    (dict(cairn={"schedule": "0 2 * * *"}), '"image"', "k8s/Dockerfile"),
    (dict(cairn={"image": IMAGE, "networkPolicy": True, "endpoint": "http://minio.lan:9000"}), '"minioCidr"', "is required"),
    (dict(cairn={"image": IMAGE, "pushgateway": "https://pgw.monitoring.svc:9091"}), '"pushgateway"', "must be an http:// URL"),
    (dict(cairn={"image": IMAGE, "pushgateway": "http://u:hunter2@pgw.monitoring.svc:9091"}), '"pushgateway"', "the value is not repeated"),
    (dict(cairn={"image": IMAGE, "pushgateway": "http://pgw.obs.svc:80", "pushgatewayNamespace": "monitoring"}), '"pushgatewayNamespace"', "names the namespace"),
    (dict(cairn={"image": IMAGE, "optionalFolders": ["bkup"]}), '"optionalFolders"', "not one of folders"),
]
ERROR_LINE = re.compile(r"^(error: )?cairn: ")


def check_settings(ev, label):
    base = evaluated(ev, cairn={"image": IMAGE})
    for what, kw, want, good in override_cases(base):
        objs = evaluated(ev, **kw)
        got = changed_paths(base, objs)
        if got != want:
            sys.exit(f"k8s-check: {label}: {what} changed {sorted(got - want)[:8]} and not {sorted(want - got)[:8]}")
        if not good(objs):
            sys.exit(f"k8s-check: {label}: {what} gave the wrong values")
    for kw, name, want in ERROR_CASES:
        rc, _, err = ev(**kw)
        lines = [line.strip() for line in err.splitlines() if ERROR_LINE.match(line.strip())]
        if rc == 0 or len(lines) != 1 or name not in lines[0] or want not in lines[0]:
            sys.exit(f"k8s-check: {label}: {kw} did not fail with one line naming {name} ({want!r}):\n{err}")
        if "hunter2" in err:
            sys.exit(f"k8s-check: {label}: the error for {kw} repeats a credential:\n{err}")
    return base


def hashed_problems(objs):
    """References that do not follow the (hashed) ConfigMap and Secret names of `objs`."""
    configmaps = {o["metadata"]["name"] for o in objs.values() if o["kind"] == "ConfigMap"}
    problems = secret_ref_problems(list(objs.values()), defined_secrets(list(objs.values())))
    for d, pod in pods(objs.values()):
        for v in pod.get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                problems.append(f"{d['metadata']['name']} mounts the ConfigMap {v['configMap']['name']}, which is not in the output")
    return problems


def check_kubenix(plain_base):
    if not kubenix_available():
        print("k8s-check: the real-kubenix checks were not run (set CAIRN_KUBENIX_SRC to a kubenix checkout and CAIRN_NIXPKGS_LIB to nixpkgs' lib)")
        return
    base = check_settings(kubenix_eval, "kubenix")
    if changed_paths(plain_base, base):
        sys.exit(f"k8s-check: kubenix's objects differ from the plain evaluation at {sorted(changed_paths(plain_base, base))[:8]}")
    full = {"image": IMAGE, **FULL}
    if changed_paths(evaluated(plain_eval, cairn=full), evaluated(kubenix_eval, cairn=full)):
        sys.exit("k8s-check: with every option on, kubenix's objects differ from the plain evaluation")
    # Hashed names: the ConfigMap and the Secrets are renamed, and every reference follows.
    hashed = evaluated(kubenix_eval, cairn=full, hashed=True)
    renamed = {o["metadata"]["name"] for o in hashed.values() if o["kind"] in ("ConfigMap", "Secret")}
    if renamed & {o["metadata"]["name"] for o in base.values()} or len(renamed) != 3:
        sys.exit(f"k8s-check: kubenix's hashed names did not rename the ConfigMap and the two Secrets: {sorted(renamed)}")
    # The check must be able to fail: references to the names before hashing are caught.
    stale = json.loads(json.dumps(hashed).replace("-cairn-", "-cairn-x").replace("-credentials-", "-credentials-x"))
    stale = keyed(o for o in stale.values())
    for o in stale.values():
        o["metadata"]["name"] = o["metadata"]["name"].replace("-cairn-x", "-cairn-").replace("-credentials-x", "-credentials-")
    assert len(hashed_problems(stale)) >= 3, hashed_problems(stale)
    problems = hashed_problems(hashed)
    existing = evaluated(kubenix_eval, cairn={**full, "secretsFrom": "existing", "nightlySecret": "s3-nightly"}, hashed=True)
    aws = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    problems += secret_ref_problems(list(existing.values()), {"s3-nightly": aws, PLAN["retention_secret"]: aws})
    problems += [p for p in hashed_problems(existing) if "ConfigMap" in p]
    if problems:
        sys.exit("k8s-check: kubenix with hashed names: " + "; ".join(problems))
    print("k8s-check: in a real kubenix evaluation the module gives the plain evaluation's objects, the same overrides and "
          "one-line errors, and with hashed names every reference follows the ConfigMap and Secrets")


# Every option that adds or changes objects, on: rendered and validated beside the example.
FULL = {
    "networkPolicy": True,
    "imagePullSecrets": ["registry-credentials"],
    "stateStorageClass": "ceph-block",
    "sessionStorageClass": "ceph-block",
    "restoreStorageClass": "ceph-block",
    "supplementalGroups": [1000],
    "extraEnv": [{"name": "CAIRN_LOG", "value": "debug"}],
}


def render_variants():
    """The manifests of the example render and of the other modes, by name."""
    example = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    existing = evaluated(plain_eval, cairn={"image": IMAGE, "secretsFrom": "existing"})
    full = evaluated(plain_eval, cairn={"image": IMAGE, **FULL})
    return {"the example render": example, "secretsFrom = existing": list(existing.values()),
            "every option on": list(full.values())}


def check_validate(variants):
    with tempfile.TemporaryDirectory() as tmp:
        files = [str(MANIFEST)]
        for i, (name, docs) in enumerate(variants.items()):
            if name != "the example render":
                f = Path(tmp) / f"variant-{i}.yaml"
                f.write_text("---\n".join(yaml.safe_dump(d, sort_keys=True) for d in docs))
                files.append(str(f))
        for v in VERSIONS:
            run(["kubernetes-validate", "--strict", "--quiet", "-k", v, *files])
    print(f"k8s-check: kubernetes-validate --strict passes for {', '.join(VERSIONS)} ({', '.join(variants)})")


def check_pod_hygiene(variants):
    problems = []
    full = variants["every option on"]
    for d, pod in pods(full):
        name = d["metadata"]["name"]
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{name} mounts a service account token")
        if not d["metadata"]["labels"].get("app.kubernetes.io/component"):
            problems.append(f"{name} has no app.kubernetes.io/component label")
        if pod.get("imagePullSecrets") != [{"name": "registry-credentials"}]:
            problems.append(f"{name} has no imagePullSecrets")
    for d in full:
        if d["kind"] == "PersistentVolumeClaim" and d["spec"].get("storageClassName") != "ceph-block":
            problems.append(f"{d['metadata']['name']} has no storageClassName")
    policies = {d["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: d for d in full if d["kind"] == "NetworkPolicy"}
    for d, pod in pods(full):
        component = d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        if component not in policies:
            problems.append(f"no NetworkPolicy selects {d['metadata']['name']}")
    for component, np in policies.items():
        if np["spec"].get("ingress") != [] or "Ingress" not in np["spec"]["policyTypes"]:
            problems.append(f"the NetworkPolicy of {component} admits ingress")
        ports = {(p["protocol"], p["port"]) for rule in np["spec"]["egress"] for p in rule["ports"]}
        if not {("UDP", 53), ("TCP", 53)} <= ports:
            problems.append(f"the NetworkPolicy of {component} has no DNS")
        if (("TCP", 443) in ports) != (component in ("offsite", "proton-bootstrap")):
            problems.append(f"the NetworkPolicy of {component} is wrong about 443")
        if component != "proton-bootstrap" and not any(
                t.get("ipBlock", {}).get("cidr") == "10.10.10.209/32" for rule in np["spec"]["egress"] for t in rule.get("to", [])):
            problems.append(f"the NetworkPolicy of {component} does not reach MinIO")
    inits = {d["metadata"]["name"]: [c["args"] for c in pod.get("initContainers", [])] for d, pod in pods(full)}
    for job, role in (("shared-subfolders-backup", "nightly"), ("shared-subfolders-retention", "retention"),
                      ("shared-subfolders-proton-sync", "offsite")):
        if not inits[job] or inits[job][0] != ["preflight", "--role", role]:
            problems.append(f"{job}'s first init container is not `cairn preflight --role {role}`")
    if problems:
        sys.exit("k8s-check: " + "; ".join(problems))
    print("k8s-check: every pod: no service account token, a component label, pull Secrets and storage classes when set, "
          "a NetworkPolicy (DNS, MinIO, Pushgateway, 443 for Proton only, no ingress); preflight first in each job")


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
    # Every runbook link leads somewhere: an "### Alert: NAME" heading of docs/OPERATIONS.md,
    # whose anchor GitHub and other renderers make as `#alert-name`.
    anchors = {"alert-" + re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^### Alert: (.+)$", (ROOT / "docs" / "OPERATIONS.md").read_text(), re.M)}
    for g in yaml.safe_load((mon / "rules.yaml").read_text())["groups"]:
        for r in g["rules"]:
            link = r["annotations"]["runbook"]
            if not link.startswith("docs/OPERATIONS.md#") or link.split("#", 1)[1] not in anchors:
                sys.exit(f"k8s-check: {r['alert']}'s runbook {link} has no heading in docs/OPERATIONS.md")
    # The rules as a Nix value (for a kubenix monitoring module) and as a PrometheusRule: the same.
    source = yaml.safe_load((mon / "rules.yaml").read_text())
    rc, as_nix, err = nix_eval(f"import {mon / 'rules.nix'}")
    if rc != 0 or as_nix != source:
        sys.exit(f"k8s-check: k8s/monitoring/rules.nix does not evaluate to rules.yaml:\n{err}")
    prom_rule = yaml.safe_load((mon / "prometheusrule.yaml").read_text())
    if prom_rule.get("kind") != "PrometheusRule" or prom_rule.get("spec") != source:
        sys.exit("k8s-check: k8s/monitoring/prometheusrule.yaml is not rules.yaml as a PrometheusRule")
    print("k8s-check: promtool check and test rules pass; the Grafana alerts, the PrometheusRule and "
          "rules.nix (nix-instantiate) match the rules")


def check_image():
    # The image itself is built (its runtime stage, offline) and run by scripts/pod-check.py.
    run(["hadolint", str(K8S / "Dockerfile")])
    print("k8s-check: hadolint passes (scripts/pod-check.py builds the image and runs the pods)")


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
    gw, port = deploy_test.start_pushgateway()
    try:
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
        cfg = (point_at_test_server(config, prefix)
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
        print("k8s-check: the backup CronJob's init containers (preflight, init) and command ran against the S3 server; the Pushgateway got its stages")
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
    # The read-only key (scripts/s3-server.sh grants it read on the store and the exports).
    drill_env.update({
        "AWS_ACCESS_KEY_ID": os.environ["CAIRN_S3_TEST_RO_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["CAIRN_S3_TEST_RO_SECRET"],
        "DRILL_DIR": str(work / "drill"),
        "DATE": datetime.datetime.now(zoneinfo.ZoneInfo(re.search(r'timezone = "([^"]+)"', Path(env["CAIRN_CONFIG"]).read_text()).group(1))).strftime("%Y-%m-%d"),
        "BUCKET": os.environ["CAIRN_S3_TEST_EXPORTS_BUCKET"] + "/" + re.search(r'prefix = "(k8s-[^"/]+)"', (Path(env["CAIRN_CONFIG"])).read_text()).group(1),
        "AWS_ENDPOINT_URL": os.environ["CAIRN_S3_TEST_ENDPOINT"],
        "AWS_DEFAULT_REGION": os.environ.get("CAIRN_S3_TEST_REGION", "garage"),
    })
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", m.group(1)], env=drill_env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"k8s-check: the restore drill failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    # ... and that key cannot write: the drill needs nothing more.
    probe = work / "drill" / "probe.txt"
    probe.write_text("drill\n")
    r = subprocess.run(["aws", "s3", "cp", "--only-show-errors", "--endpoint-url", drill_env["AWS_ENDPOINT_URL"], str(probe),
                        f"s3://{drill_env['BUCKET']}/drill-probe.txt"], env=drill_env, capture_output=True, text=True)
    if r.returncode == 0:
        sys.exit("k8s-check: the drill's read-only key could write to the exports")
    print("k8s-check: the restore drill of docs/OPERATIONS.md ran verbatim with the read-only key and passed")


def main():
    cairn = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    run([sys.executable, str(K8S / "render.py"), "--check"])
    print("k8s-check: the manifests equal the kubenix module's evaluation")
    variants = render_variants()
    check_validate(variants)
    plain_base = check_settings(plain_eval, "the module")
    print("k8s-check: the function's cairn, _module.args.cairn and kubenix's namespace each change exactly what they should; "
          "an unknown setting or a wrong kind fails in one line naming it")
    check_kubenix(plain_base)
    check_secrets(variants)
    check_secret_refs(variants["the example render"], variants["secretsFrom = existing"],
                      [PLAN["nightly_secret"], PLAN["retention_secret"]])
    check_docs_secrets()
    check_plan_names()
    check_pod_hygiene(variants)
    check_rules()
    check_image()
    if cairn:
        check_cronjob(cairn)


if __name__ == "__main__":
    main()
