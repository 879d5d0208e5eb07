#!/usr/bin/env python3
"""Fails when two top-level modules of the host crate import each other,
directly or through others (an import cycle), and prints the layering.

A module is `host/src/<name>.rs` with its folder `host/src/<name>/`. An
edge `a -> b` is any `crate::b` path in a's code (comments are skipped,
`use crate::{b, c::d}` groups are read), including its unit tests: a test
that needs a module above its own is a sign the code does too.

Usage: python3 scripts/check-layers.py [--graph]
"""

import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "host" / "src"
# The crate root and the binary are above every module by definition.
ROOTS = {"lib", "main"}


def modules():
    names = {p.stem for p in SRC.glob("*.rs")} - ROOTS
    return sorted(names)


def files_of(name):
    yield SRC / f"{name}.rs"
    folder = SRC / name
    if folder.is_dir():
        yield from sorted(folder.rglob("*.rs"))


def strip_comments(text):
    # Line comments (and doc comments); block comments are rare here but
    # handled too. String literals containing `//` are left alone by
    # skipping a line comment only when it starts outside a string.
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = []
    for line in text.splitlines():
        in_str = False
        cut = len(line)
        i = 0
        while i < len(line) - 1:
            c = line[i]
            if c == "\\" and in_str:
                i += 2
                continue
            if c == '"':
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


def group_heads(text, start):
    """The first segment of each item of the `{...}` group at `start`:
    `{a, b::c, d::{e, f}}` gives a, b, d."""
    heads, token, depth, item_start = [], "", 0, True
    for c in text[start + 1 :]:
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                break
            depth -= 1
        if depth > 0:
            continue
        if c == ",":
            if item_start and token:
                heads.append(token)
            item_start, token = True, ""
        elif item_start and (c.isalnum() or c == "_"):
            token += c
        elif item_start and token:
            heads.append(token)
            item_start, token = False, ""
    if item_start and token:
        heads.append(token)
    return heads


def deps(name, names):
    found = set()
    for f in files_of(name):
        text = strip_comments(f.read_text())
        for m in re.finditer(r"\bcrate::(\{|[a-z_][a-z0-9_]*)", text):
            if m.group(1) == "{":
                found.update(group_heads(text, m.end() - 1))
            else:
                found.add(m.group(1))
    return sorted(d for d in found if d in names and d != name)


def find_cycle(graph):
    state = {}  # 1 visiting, 2 done
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in graph[n]:
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state:
                cycle = visit(d)
                if cycle:
                    return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in graph:
        if n not in state:
            cycle = visit(n)
            if cycle:
                return cycle
    return None


def layers(graph):
    """Modules by depth: layer 0 imports nothing, layer k only below k."""
    depth = {}

    def d(n):
        if n not in depth:
            depth[n] = 1 + max((d(x) for x in graph[n]), default=-1)
        return depth[n]

    for n in graph:
        d(n)
    by = {}
    for n, k in depth.items():
        by.setdefault(k, []).append(n)
    return [sorted(by[k]) for k in sorted(by)]


def main():
    names = set(modules())
    graph = {n: deps(n, names) for n in sorted(names)}
    cycle = find_cycle(graph)
    if "--graph" in sys.argv or cycle:
        for n, ds in graph.items():
            print(f"{n} -> {' '.join(ds) if ds else '(nothing)'}")
    if cycle:
        print(f"import cycle between host modules: {' -> '.join(cycle)}", file=sys.stderr)
        return 1
    for k, layer in enumerate(layers(graph)):
        print(f"layer {k}: {' '.join(layer)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
