#!/usr/bin/env python3
"""Fails (exit 1) when files of the engine import each other in a cycle.

Layers must only point down (docs/DECISIONS.md, "Layers"): a file may use the ones below it,
never one that uses it back. Every file of engine/src is a node, named by its module path
(`format/chunk.rs` is `format::chunk`, `repo/mod.rs` is `repo`); lib.rs is left out, and so is
test code (`#[cfg(test)]` and below) and comments. A file depends on every module it names by
`crate::a::b`, `super::b` or `self::b`, resolved to the longest module path that exists (lib.rs's
re-exports of old paths are followed). A folder's mod.rs declaring its children (`mod x;`) and
re-exporting them (`pub use x::…;`) is its table of contents, not a use; any other mention of a
child from mod.rs is.

Before it checks the tree, the script proves itself: on a copy of engine/src with a cycle
injected between two files of one folder (`format::codec` → `format::pack`, which already uses
codec), it must report that cycle. `--root DIR` checks another tree.
"""
import os
import re
import shutil
import sys
import tempfile

IDENT = r"[a-z_][a-z0-9_]*"


def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return "::".join(rel)


def code(path):
    text = open(path, encoding="utf-8").read()
    text = text.split("#[cfg(test)]")[0]
    # Comments (doc links included) name modules without depending on them.
    return re.sub(r"//[^\n]*", "", text)


def graph(root):
    files = {}
    for dp, _, fs in os.walk(root):
        for f in fs:
            if f.endswith(".rs") and not (dp == root and f == "lib.rs"):
                p = os.path.join(dp, f)
                files[module_of(root, p)] = p
    aliases = {}
    lib = os.path.join(root, "lib.rs")
    if os.path.exists(lib):
        for head, names in re.findall(r"pub use (" + IDENT + r")::\{([^}]*)\};", code(lib)):
            for n in re.findall(IDENT, names):
                aliases[n] = f"{head}::{n}"
        for head, n in re.findall(r"pub use (" + IDENT + r")::(" + IDENT + r");", code(lib)):
            aliases[n] = f"{head}::{n}"

    # What each folder's mod.rs re-exports from its children (`pub use local::LocalStore;`,
    # `pub use contract::*;`): a path through the folder to such a name is a use of the child.
    exports = {}
    for m, p in files.items():
        if not p.endswith(os.sep + "mod.rs"):
            continue
        text = code(p)
        names = {}
        for child, items in re.findall(r"^\s*(?:pub(?:\([a-z]+\))? )?use (" + IDENT + r")::(\{[^}]*\}|\*|\w+)\s*;", text, flags=re.M):
            target = f"{m}::{child}" if m else child
            if target not in files:
                continue
            if items == "*":
                listed = re.findall(r"^pub(?:\([a-z]+\))? (?:struct|enum|fn|trait|type|const|static|mod) (\w+)", code(files[target]), flags=re.M)
            else:
                listed = [re.split(r"\s+as\s+", x.strip())[-1] for x in items.strip("{}").split(",") if x.strip()]
            for n in listed:
                names[n] = target
        exports[m] = names

    def resolve(segments):
        if segments and segments[0] in aliases:
            segments = aliases[segments[0]].split("::") + segments[1:]
        for k in range(len(segments), -1, -1):
            cand = "::".join(segments[:k])
            if cand in files or (k == 0 and "" in exports):
                if k < len(segments) and segments[k] in exports.get(cand, {}):
                    return exports[cand][segments[k]]
                return cand if cand in files else None
        return None

    edges = {m: set() for m in files}
    for m, p in files.items():
        is_folder = p.endswith(os.sep + "mod.rs")
        here = m.split("::") if m else []
        # `super` of a::b (a file) is a; of a (a folder's mod.rs) is the crate root.
        parent = here[:-1]
        text = code(p)
        if is_folder:
            children = re.findall(r"^\s*(?:pub(?:\([a-z]+\))? )?mod (" + IDENT + r");", text, flags=re.M)
            text = re.sub(r"^\s*(pub(\([a-z]+\))? )?mod " + IDENT + r";", "", text, flags=re.M)
            # Its re-exports are its table of contents; uses of them elsewhere are resolved above.
            # A name it takes from a child counts as a use only where its own code uses it.
            text = re.sub(r"^\s*(pub(\([a-z]+\))? )?use (" + "|".join(children or ["-"]) + r")::[^;]*;", "", text, flags=re.M)
            for name, child in exports.get(m, {}).items():
                if re.search(r"\b" + name + r"\b", text):
                    edges[m].add(child)
            # A child named by its bare name (`walk::write_archive`), a use of it like any other;
            # a re-export (`pub use handle::*;`) too, since callers reach the child through it.
            for c in children:
                if re.search(r"(?<![:\w])" + c + r"::", text):
                    r = resolve(here + [c])
                    if r is not None:
                        edges[m].add(r)
        for kind, path in re.findall(r"\b(crate|super|self)::((?:" + IDENT + r"::)*" + IDENT + r"|\{)", text):
            segs = [] if path == "{" else path.split("::")
            if kind == "crate":
                base = []
            elif kind == "super":
                base = parent if not is_folder else here[:-1]
            else:
                base = here
            if path == "{":
                continue  # the names inside the braces are resolved below
            r = resolve(base + segs)
            if r is not None and r != m:
                edges[m].add(r)
        # a child file's `use super::{a, b}` names siblings
        for kind, names in re.findall(r"\b(super|self)::\{([^}]*)\}", text):
            base = (parent if not is_folder else here[:-1]) if kind == "super" else here
            for n in re.findall(r"\w+", re.sub(r"\bas\s+\w+", "", names)):
                r = resolve(base + [n])
                if r is not None and r != m:
                    edges[m].add(r)
    return files, edges


def cycles(edges):
    """Tarjan's strongly connected components of more than one node."""
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)

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
    return comps


def report(edges, comps):
    for c in comps:
        inner = [f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c]
        print("module cycle: " + ", ".join(inner))


def self_test(root):
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "src")
        shutil.copytree(root, copy)
        files, edges = graph(copy)
        assert "format::pack" in edges and "format::codec" in edges["format::pack"], (
            "self-test: format::pack no longer uses format::codec; pick another pair")
        codec = os.path.join(copy, "format", "codec.rs")
        text = open(codec, encoding="utf-8").read()
        with open(codec, "w", encoding="utf-8") as f:
            # Before the test module, which the check leaves out.
            f.write("fn injected_cycle() -> usize { super::pack::PACK_HEADER_LEN }\n" + text)
        files, edges = graph(copy)
        comps = cycles(edges)
        if not any("format::codec" in c and "format::pack" in c for c in comps):
            print("self-test failed: a cycle injected between format/codec.rs and format/pack.rs was not found")
            sys.exit(2)


def main():
    args = sys.argv[1:]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine", "src")
    if args[:1] == ["--root"]:
        root = args[1]
    else:
        self_test(root)
    files, edges = graph(root)
    if os.environ.get("SHOW_EDGES"):
        for m in sorted(edges):
            print(m, "->", ", ".join(sorted(edges[m])))
    comps = cycles(edges)
    if comps:
        report(edges, comps)
        sys.exit(1)
    print(f"no module cycles among {len(files)} engine files (self-test: an injected cycle is found)")


main()
