"""The import rules of the layout (README "Architecture"), checked on the source with ast.

Library (what a reader of the papers reads): base (refimpl, constants, measure) <- ring <- ckks
<- nexus; bert <- aby3; bert <- nexus; aby3 and the CKKS side never meet. The core of ckks does
not import ckks.bootstrap. The top layer (the command line, demo, reproduce, bench, experiments,
the spec checker) may import anything; nothing in the library imports it, and the standalone
peer scripts import no refimpl at all. No module-level import cycle anywhere. A library function
holds an import only with a `# lazy:` comment that says why (an optional or heavy package). A module
over 500 lines says why near its top (`# Long module: ...`). No module uses another's private (`_x`) names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "refimpl"

BASE = {"refimpl", "refimpl.constants", "refimpl.measure", "refimpl.csprng", "refimpl.errors",
        "refimpl.progress"}
LIBRARY_ALLOWED = {
    "ring": {"ring"},
    "ckks": {"ring", "ckks"},
    "nexus": {"ring", "ckks", "bert", "nexus"},
    "bert": {"bert"},
    "aby3": {"bert", "aby3"},
}
TOP = {"cli", "demo", "reproduce", "bench", "experiments", "spec", "__main__"}
PEER_SCRIPTS = PKG / "bench" / "peer_scripts"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(imported module, at module level?, line) for every refimpl import of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    for n in tree.body:  # imports inside a module-level `if` / `try` run at import (but not `if TYPE_CHECKING:`)
        type_checking = isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
        if isinstance(n, (ast.If, ast.Try)) and not type_checking:
            top_level |= {id(m) for m in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "refimpl" or name.startswith("refimpl."):
                out.append((name, id(node) in top_level, node.lineno))
    return out


def known_module(name: str, modules: set[str]) -> str:
    """The longest prefix of `name` that is a module of the package (from x import y: y may be a name)."""
    while name not in modules and "." in name:
        name = name.rpartition(".")[0]
    return name


def area(mod: str) -> str:
    if mod in BASE:
        return "base"
    return mod.split(".")[1]


ALL = sorted(p for p in PKG.rglob("*.py") if PEER_SCRIPTS not in p.parents)
MODULES = {module_name(p) for p in ALL}


def test_every_module_belongs_to_a_layer():
    unknown = sorted({area(m) for m in MODULES} - set(LIBRARY_ALLOWED) - TOP - {"base"})
    assert unknown == [], f"packages with no layer (add them to the rules and the README): {unknown}"


@pytest.mark.parametrize("path", [p for p in ALL if area(module_name(p)) not in TOP], ids=lambda p: module_name(p))
def test_library_imports_go_one_way(path):
    me = module_name(path)
    mine = area(me)
    allowed = {"base"} | (LIBRARY_ALLOWED.get(mine, set()) if mine != "base" else set())
    bad = []
    for name, _, line in imports(path):
        target = known_module(name, MODULES)
        there = area(target)
        if there not in allowed:
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({mine} may import {sorted(allowed)})")
        if mine == "ckks" and not me.startswith("refimpl.ckks.bootstrap") and target.startswith("refimpl.ckks.bootstrap"):
            bad.append(f"{path.relative_to(ROOT)}:{line}: the ckks core imports {target}")
    assert bad == []


def unexplained_function_imports(source: str) -> list[int]:
    """Lines of the imports inside a function that carry no reason: a comment starting `# lazy:` on
    the import's line, on the line above it, or on the `try:` line of a try block holding it."""
    lines = source.splitlines()
    tree = ast.parse(source)
    parents = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}

    def explained(line: int) -> bool:
        return "# lazy:" in lines[line - 1] or (line > 1 and lines[line - 2].strip().startswith("# lazy:"))

    bad = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or explained(node.lineno):
                continue
            up = parents.get(id(node))
            while up is not None and up is not fn and not (isinstance(up, ast.Try) and explained(up.lineno)):
                up = parents.get(id(up))
            if up is None or up is fn:
                bad.append(node.lineno)
    return sorted(set(bad))


@pytest.mark.parametrize("path", [p for p in ALL if area(module_name(p)) not in TOP], ids=lambda p: module_name(p))
def test_library_imports_sit_at_the_top(path):
    """Imports at the module top, unless a `# lazy:` comment says why (an optional or heavy package)."""
    lines = unexplained_function_imports(path.read_text(encoding="utf-8"))
    assert [f"{path.relative_to(ROOT)}:{n}" for n in lines] == []


def test_the_import_rule_catches_an_unexplained_function_import():
    source = (
        "import math\n"
        "def f():\n"
        "    from refimpl.bert.model import forward\n"
        "    import json  # lazy: a reason\n"
        "    # lazy: a reason above\n"
        "    import os\n"
        "    try:  # lazy: an optional package\n"
        "        import matplotlib\n"
        "    except ModuleNotFoundError:\n"
        "        pass\n"
        "    def g():\n"
        "        import sys\n"
    )
    assert unexplained_function_imports(source) == [3, 12]


def private_names_used(source: str) -> list[str]:
    """`from refimpl... import _x` and `m._x` where m is a name bound by an import of refimpl (or a relative one)."""
    tree = ast.parse(source)
    bound, out = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "refimpl"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    out.append(f"{node.lineno}: imports {a.name}")
                bound.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "refimpl"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                out.append(f"{node.lineno}: uses {ast.unparse(node)}")
    return out


@pytest.mark.parametrize("path", ALL, ids=lambda p: module_name(p))
def test_no_private_names_across_modules(path):
    assert private_names_used(path.read_text(encoding="utf-8")) == []


def test_the_private_name_rule_can_fail():
    source = (
        "import refimpl.ckks.serialize\n"
        "from refimpl.bert import functional as F\n"
        "from .boolean import _compact, bit\n"
        "from numpy import _private_ok\n"
        "x = F._key_mask, F.key_mask, refimpl.ckks.serialize._HEAD, bit._y, self._z\n"
    )
    assert private_names_used(source) == [
        "3: imports _compact", "5: uses F._key_mask", "5: uses refimpl.ckks.serialize._HEAD", "5: uses bit._y"]


LONG = 500  # lines; a longer module says why near its top


def long_without_reason(source: str, limit: int = LONG) -> bool:
    """A module over `limit` lines with no line starting `# Long module:` (why it stays whole) in its first 60."""
    lines = source.splitlines()
    return len(lines) > limit and not any(line.startswith("# Long module:") for line in lines[:60])


@pytest.mark.parametrize("path", ALL, ids=lambda p: module_name(p))
def test_long_modules_say_why(path):
    assert not long_without_reason(path.read_text(encoding="utf-8")), (
        f"{path.relative_to(ROOT)} is over {LONG} lines: split it along function boundaries or add a "
        "`# Long module: <why>` comment near its top")


def test_the_length_rule_can_fail():
    body = "x = 1\n" * 20
    assert long_without_reason(body, limit=10)
    assert not long_without_reason("# Long module: one table\n" + body, limit=10)
    assert not long_without_reason(body, limit=30)


def test_peer_scripts_are_standalone():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {n}" for p in PEER_SCRIPTS.rglob("*.py") for n, _, line in imports(p)]
    assert bad == []


def module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for p in ALL:
        me = module_name(p)
        for name, at_top, _ in imports(p):
            target = known_module(name, MODULES)
            if at_top and target != me and target in MODULES:
                graph[me].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    # a package's __init__ re-exporting its own modules is not a cycle of the design: leave those edges out
    graph = {m: {t for t in ts if not (m.count(".") < t.count(".") and t.startswith(m + "."))}
             for m, ts in module_graph().items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_layer_rule_catches_an_upward_import(tmp_path):
    """A library module importing the command line is found (the rule can fail)."""
    fake = PKG / "bert" / "zz_layering_probe.py"
    fake.write_text("from refimpl.cli import main\n", encoding="utf-8")
    try:
        targets = [known_module(n, MODULES | {"refimpl.cli"}) for n, _, _ in imports(fake)]
        assert any(area(t) in TOP for t in targets)
    finally:
        fake.unlink()
