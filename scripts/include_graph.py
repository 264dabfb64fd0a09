#!/usr/bin/env python3
"""scripts/include_graph.py [--dot] [ROOT]: the module include graph of aqs (a module is a
top-level directory, or engine/<dir>): which module's files include which module's headers.
Exits 1 naming the cycle if the graph has one, or an edge against the layering of DESIGN.md §6
(cli -> engine -> store, kernels -> common); --dot prints the graph for Graphviz."""
import os, re, sys

LAYER = {"common": 0, "store": 1, "kernels": 1, "engine": 2, "cli": 3}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(path):
    parts = path.split("/")
    if parts[0] == "engine" and len(parts) > 2:
        return "engine/" + parts[1]
    return parts[0] if parts[0] in LAYER else None


def graph(root):
    edges = {}
    for top in LAYER:
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if not f.endswith((".c", ".h", ".cu", ".cuh")):
                    continue
                rel = os.path.relpath(os.path.join(d, f), root)
                src = module_of(rel)
                text = open(os.path.join(root, rel), encoding="utf-8", errors="replace").read()
                for inc in INCLUDE.findall(text):
                    dst = module_of(inc)
                    if dst and dst != src:
                        edges.setdefault(src, {}).setdefault(dst, []).append(rel)
    return edges


def find_cycle(edges):
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, {})):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if not state.get(m):
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if not state.get(n):
            c = visit(n)
            if c:
                return c
    return None


def main():
    args = [a for a in sys.argv[1:] if a != "--dot"]
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    edges = graph(root)
    if "--dot" in sys.argv:
        print("digraph aqs {")
        for s in sorted(edges):
            for d in sorted(edges[s]):
                print(f'  "{s}" -> "{d}" [label="{len(edges[s][d])}"];')
        print("}")
    bad = 0
    cycle = find_cycle(edges)
    if cycle:
        s, d = cycle[0], cycle[1]
        print("include cycle: " + " -> ".join(cycle) + f" (e.g. {edges[s][d][0]})", file=sys.stderr)
        bad = 1
    for s in sorted(edges):
        for d in sorted(edges[s]):
            ls, ld = LAYER[s.split("/")[0]], LAYER[d.split("/")[0]]
            if ld > ls or (ld == ls and s.split("/")[0] != d.split("/")[0]):
                print(f"layering: {s} includes {d} ({edges[s][d][0]})", file=sys.stderr)
                bad = 1
    n_edges = sum(len(v) for v in edges.values())
    print(f"{len(set(edges) | {d for v in edges.values() for d in v})} modules, {n_edges} edges, "
          f"{'no cycle' if not cycle else 'CYCLE'}", file=sys.stderr)
    return bad


sys.exit(main())
