#!/usr/bin/env python3
"""Grafana alert provisioning generated from the Prometheus rules, so that both page on the same
expressions. Usage: grafana.py            writes grafana-alerts.json beside this file
                    grafana.py --check    exits 1 if grafana-alerts.json is not what rules.yaml gives

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


def main():
    rules = yaml.safe_load((HERE / "rules.yaml").read_text())
    text = json.dumps(convert(rules), indent=2, sort_keys=True) + "\n"
    target = HERE / "grafana-alerts.json"
    if "--check" in sys.argv[1:]:
        if not target.exists() or target.read_text() != text:
            sys.exit("k8s/monitoring/grafana-alerts.json is not what rules.yaml gives: run k8s/monitoring/grafana.py")
        print("grafana-alerts.json matches rules.yaml")
        return
    target.write_text(text)


if __name__ == "__main__":
    main()
