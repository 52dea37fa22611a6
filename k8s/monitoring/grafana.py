#!/usr/bin/env python3
"""Grafana alert provisioning generated from the Prometheus rules, so that both page on the same
expressions; also the rules as a PrometheusRule object and as a Nix value, and the dashboard
(dashboard.json) from panels.yaml.
Usage: grafana.py            writes grafana-alerts.json, prometheusrule.yaml and rules.nix here
       grafana.py --check    exits 1 if one of them is not what rules.yaml gives

Each rule becomes a Grafana-managed alert: query A is the rule's expression with every series it
returns mapped to 1 (`(expr) * 0 + 1`, so that `== 0` conditions fire too), B reduces it to its
last value, C fires when B > 0. No data means no alert, as in Prometheus. Durations, labels and
annotations are carried over; the runbook becomes the runbook_url annotation.
"""

import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DATASOURCE = "prometheus"


def uid(name):
    return "cairn-" + re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()[:30]


def convert(rules):
    groups = []
    for g in rules["groups"]:
        out = []
        for r in g["rules"]:
            ann = dict(r.get("annotations", {}))
            if "runbook" in ann:
                ann["runbook_url"] = ann.pop("runbook")
            out.append({
                "uid": uid(r["alert"]),
                "title": r["alert"],
                "condition": "C",
                "for": r.get("for", "0s"),
                "noDataState": "OK",
                "execErrState": "Error",
                "labels": r.get("labels", {}),
                "annotations": ann,
                "data": [
                    {"refId": "A", "datasourceUid": DATASOURCE,
                     "relativeTimeRange": {"from": 600, "to": 0},
                     "model": {"refId": "A", "expr": f"({r['expr']}) * 0 + 1", "instant": True}},
                    {"refId": "B", "datasourceUid": "__expr__",
                     "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"}},
                    {"refId": "C", "datasourceUid": "__expr__",
                     "model": {"refId": "C", "type": "threshold", "expression": "B",
                               "conditions": [{"evaluator": {"type": "gt", "params": [0]}}]}},
                ],
            })
        groups.append({"orgId": 1, "name": g["name"], "folder": "cairn", "interval": "1m", "rules": out})
    return {"apiVersion": 1, "groups": groups}


def nix(v, indent=""):
    """A JSON value as a Nix expression (attribute names quoted, strings escaped for Nix)."""
    inner = indent + "  "
    if isinstance(v, dict):
        if not v:
            return "{ }"
        items = "".join(f'{inner}"{k}" = {nix(x, inner)};\n' for k, x in sorted(v.items()))
        return "{\n" + items + indent + "}"
    if isinstance(v, list):
        if not v:
            return "[ ]"
        return "[\n" + "".join(f"{inner}{nix(x, inner)}\n" for x in v) + indent + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return '"' + s.replace("\n", "\\n") + '"'


def dashboard(panels):
    """The Grafana dashboard: one time-series panel per entry of panels.yaml, on a datasource
    chosen by the `datasource` variable (no fixed uid)."""
    out = []
    for i, p in enumerate(panels["panels"]):
        out.append({
            "id": i + 1,
            "type": "timeseries",
            "title": p["title"],
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
            "targets": [
                {"refId": chr(ord("A") + j), "expr": t["expr"], "legendFormat": t["legend"],
                 "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                for j, t in enumerate(p["targets"])
            ],
        })
    return {
        "title": "cairn",
        "uid": "cairn",
        "tags": ["cairn", "backup"],
        "timezone": "browser",
        "schemaVersion": 39,
        "time": {"from": "now-14d", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": out,
    }


def outputs(rules):
    """Every file generated from rules.yaml, by name: Grafana's alert provisioning, a
    PrometheusRule for prometheus-operator, and the rules as a Nix value that a kubenix
    monitoring module can merge (`import ./rules.nix`)."""
    prometheus_rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "cairn", "namespace": "monitoring",
                     "labels": {"app.kubernetes.io/name": "cairn"}},
        "spec": rules,
    }
    head = "# Generated by k8s/monitoring/grafana.py from rules.yaml; do not edit.\n"
    return {
        "grafana-alerts.json": json.dumps(convert(rules), indent=2, sort_keys=True) + "\n",
        "prometheusrule.yaml": head + yaml.safe_dump(prometheus_rule, sort_keys=False, width=200),
        "rules.nix": head + nix(rules) + "\n",
        "dashboard.json": json.dumps(
            dashboard(yaml.safe_load((HERE / "panels.yaml").read_text())), indent=2, sort_keys=True
        ) + "\n",
    }


def main():
    rules = yaml.safe_load((HERE / "rules.yaml").read_text())
    files = outputs(rules)
    if "--check" in sys.argv[1:]:
        for name, text in files.items():
            target = HERE / name
            if not target.exists() or target.read_text() != text:
                sys.exit(f"k8s/monitoring/{name} is not what rules.yaml gives: run k8s/monitoring/grafana.py")
        print(f"{', '.join(files)} match rules.yaml")
        return
    for name, text in files.items():
        (HERE / name).write_text(text)


if __name__ == "__main__":
    main()
