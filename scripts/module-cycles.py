#!/usr/bin/env python3
"""Fails if the relay's top-level modules depend on each other in a cycle.

A module is a top-level item of relay/src (`bus`, `transport`, `error`, ...; `lib.rs` itself is
`crate`). A dependency is any `crate::NAME` path in a module's files. Prints the graph, in the
order modules may be read (each after everything it uses), and exits 1 on a cycle.
Usage: scripts/module-cycles.py [relay/src]
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "relay/src")
modules = {}
for path in sorted(root.rglob("*.rs")):
    rel = path.relative_to(root)
    name = rel.parts[0].removesuffix(".rs")
    if name in ("lib", "main"):
        continue
    text = path.read_text()
    # Tests beside the code may use anything; they are not part of the module's design.
    text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
    uses = set(re.findall(r"\bcrate::(\w+)", text))
    # Grouped imports: `use crate::{error::ApiError, bus};` names each first segment.
    for group in re.findall(r"\bcrate::\{([^}]*)\}", text):
        uses.update(re.findall(r"(?:^|,)\s*(\w+)", group))
    modules.setdefault(name, set()).update(uses)
for name, uses in modules.items():
    uses.discard(name)
    uses.intersection_update(modules.keys())

order, state = [], {}


def visit(name, stack):
    if state.get(name) == "done":
        return
    if state.get(name) == "open":
        cycle = stack[stack.index(name):] + [name]
        print("module cycle: " + " -> ".join(cycle), file=sys.stderr)
        sys.exit(1)
    state[name] = "open"
    for dep in sorted(modules[name]):
        visit(dep, stack + [name])
    state[name] = "done"
    order.append(name)


for name in sorted(modules):
    visit(name, [])
for name in order:
    print(f"{name:10} uses {', '.join(sorted(modules[name])) or '-'}")
print("no cycles among", len(order), "modules")
