#!/usr/bin/env python3
"""Fails (exit 1) when the engine's top-level modules import each other in a cycle.

Layers must only point down (docs/DECISIONS.md): a module may use the ones below it, never one
that uses it back. Every `crate::NAME` mention in engine/src/NAME.rs (or engine/src/NAME/*.rs)
counts as an edge NAME -> other; test modules (`#[cfg(test)]` and below) are left out. Inside a
folder module (engine/src/export/), `super::NAME` mentions between its files are checked the same
way, so its files keep one direction too.
"""
import os
import re
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine", "src")
modules = {}
for entry in sorted(os.listdir(root)):
    path = os.path.join(root, entry)
    if entry.endswith(".rs") and entry not in ("lib.rs",):
        modules[entry[:-3]] = [path]
    elif os.path.isdir(path):
        modules[entry] = [
            os.path.join(dp, f) for dp, _, fs in os.walk(path) for f in fs if f.endswith(".rs")
        ]

def code(f):
    text = open(f, encoding="utf-8").read()
    text = text.split("#[cfg(test)]")[0]
    # Comments (doc links included) name modules without depending on them.
    return re.sub(r"//[^\n]*", "", text)


SUB = {}
# Files of one folder module, as nodes of their own, prefixed with the folder.
for folder in [m for m, fs in modules.items() if os.path.isdir(os.path.join(root, m))]:
    files = {os.path.basename(f)[:-3]: f for f in modules[folder] if os.path.dirname(f) == os.path.join(root, folder)}
    for name, f in files.items():
        if name == "mod":
            continue
        deps = set()
        for other in re.findall(r"\bsuper::(?:\{[^}]*\}|[a-z_][a-z0-9_]*)", code(f)):
            for o in re.findall(r"[a-z_][a-z0-9_]*", other.replace("super::", "")):
                if o in files and o not in ("mod", name):
                    deps.add(o)
        SUB[f"{folder}/{name}"] = {f"{folder}/{o}" for o in deps}

edges = {m: set() for m in modules}
edges.update(SUB)
for m, files in modules.items():
    for f in files:
        text = code(f)
        for other in re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", text):
            if other in modules and other != m:
                edges[m].add(other)

# Tarjan's strongly connected components.
index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(edges[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            comps.append(sorted(comp))


for v in sorted(edges):
    if v not in index:
        visit(v)

if os.environ.get("SHOW_EDGES"):
    print(SUB)
if comps:
    for c in comps:
        inner = [f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c]
        print("module cycle: " + ", ".join(inner))
    sys.exit(1)
print(f"no module cycles among {len(modules)} engine modules and {len(SUB)} files of folder modules")
