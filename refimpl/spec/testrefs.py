"""Test references of a spec row and the static counting rule (the test exists, asserts, reaches the code)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from refimpl.spec.code import BACKTICK
from refimpl.spec.paths import WHERE

_ASSERT_FUNCS = {"raises", "warns", "deprecated_call"}
_SPAWN = {"run", "Popen", "check_call", "check_output", "call"}

# --------------------------------------------------------------------------------------------
# Test references


@dataclass
class TestFunc:
    """A test function found in a test file (static facts)."""

    file: Path
    name: str                 # "test_x" or "TestC::test_x"
    node: ast.FunctionDef
    asserts: bool
    names: set[str]           # identifiers in the test, its same-file helpers and fixtures
    slow: bool
    subprocess: bool = False  # runs code in a child process (the --run profiler cannot see it)

    @property
    def nodeid(self) -> str:
        f = self.file.relative_to(WHERE.root) if WHERE.root in self.file.parents else self.file
        return f"{f.as_posix()}::{self.name}"


@dataclass
class TestRef:
    """One test token resolved to test functions, with the counting verdict."""

    text: str
    funcs: list[TestFunc] = field(default_factory=list)
    error: str | None = None
    reaches: bool = False
    outcome: str | None = None        # with --run: passed / failed / skipped / not run
    reached_run: bool | None = None   # with --run: the profiler saw the cited code execute

    reaching: list[TestFunc] = field(default_factory=list)   # funcs that name the row's code
    run_ok: list[TestFunc] | None = None   # with --run: passed and executed the row's code

    @property
    def asserts(self) -> bool:
        return any(f.asserts for f in self.funcs)

    @property
    def counting(self) -> list[TestFunc]:
        """The functions that count: assert, name the code, and (with --run) pass and reach it."""
        if self.error:
            return []
        ok = [f for f in self.reaching if f.asserts]
        if self.run_ok is not None:
            ok = [f for f in ok if f in self.run_ok]
        return ok

    @property
    def counts(self) -> bool:
        return bool(self.counting)

    @property
    def why_not(self) -> str:
        if self.error:
            return self.error
        if not self.asserts:
            return "no assertion in the test body"
        if not any(f.asserts for f in self.reaching):
            return "does not name the row's code"
        if self.outcome is not None and self.outcome != "passed":
            return self.outcome
        if self.run_ok is not None and not self.counting:
            return "did not pass and execute the row's code"
        return ""


class TestIndex:
    """Static index of tests/**/test_*.py: functions, assertions, identifiers, fixtures."""

    def __init__(self, tests_dir: Path | None = None):
        tests_dir = WHERE.tests_dir if tests_dir is None else tests_dir
        self.tests_dir = tests_dir
        self.files: dict[Path, dict[str, TestFunc]] = {}
        for p in sorted(tests_dir.rglob("test_*.py")):
            self.files[p.resolve()] = self._index(p.resolve())

    def _fixtures(self, path: Path) -> dict[str, ast.FunctionDef]:
        """Fixture and helper functions of conftest.py files above `path` (nearest wins)."""
        out: dict[str, ast.FunctionDef] = {}
        for d in reversed([path.parent, *path.parent.parents]):
            if d != self.tests_dir and self.tests_dir not in d.parents:
                continue
            c = d / "conftest.py"
            if c.exists():
                out.update(_functions(ast.parse(c.read_text(encoding="utf-8"))))
        return out

    def _index(self, path: Path) -> dict[str, TestFunc]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        helpers = {**self._fixtures(path), **_functions(tree)}
        module_slow = _module_is_slow(tree)
        tests: dict[str, TestFunc] = {}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                tests[node.name] = self._func(path, node.name, node, helpers, module_slow)
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                for sub in node.body:
                    if isinstance(sub, ast.FunctionDef) and sub.name.startswith("test"):
                        name = f"{node.name}::{sub.name}"
                        tests[name] = self._func(path, name, sub, helpers,
                                                 module_slow or _is_slow(node))
        return tests

    def _func(self, path, name, node, helpers, module_slow) -> TestFunc:
        seen: set[str] = set()
        todo = [node] + [helpers[a.arg] for a in node.args.args if a.arg in helpers]
        names: set[str] = set()
        while todo:
            fn = todo.pop()
            if fn.name in seen:
                continue
            seen.add(fn.name)
            names |= _identifiers(fn)
            todo += [helpers[c] for c in _called_names(fn) if c in helpers and c not in seen]
        asserts = _has_assert_closure(node, helpers)
        spawns = any(isinstance(n, ast.Attribute) and n.attr in _SPAWN and isinstance(n.value, ast.Name)
                     and n.value.id == "subprocess" for f in seen for n in ast.walk(helpers.get(f, node)))
        return TestFunc(path, name, node, asserts, names, module_slow or _is_slow(node), spawns)

    def find_file(self, text: str, spec: str) -> list[Path]:
        """Test files named by `text`: a path from the repo root or tests/, else by its tail."""
        for base in (WHERE.root, self.tests_dir, self.tests_dir / spec):
            p = (base / text).resolve()
            if p in self.files:
                return [p]
        hits = [p for p in self.files if p.as_posix().endswith("/" + text)]
        pref = [p for p in hits if (self.tests_dir / spec) in p.parents]
        return pref or hits

    def find_test(self, name: str, spec: str) -> list[TestFunc]:
        hits = [fs[name] for fs in self.files.values() if name in fs]
        pref = [t for t in hits if (self.tests_dir / spec) in t.file.parents]
        return pref or hits


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _has_assert(fn: ast.AST) -> bool:
    """An assert statement, pytest.raises/warns, or an assert_* call (np.testing, unittest)."""
    for n in ast.walk(fn):
        if isinstance(n, ast.Assert):
            return True
        if isinstance(n, ast.Call):
            name = _call_name(n) or ""
            if name in _ASSERT_FUNCS or name.startswith("assert"):
                return True
    return False


def _has_assert_closure(fn: ast.FunctionDef, helpers: dict[str, ast.FunctionDef]) -> bool:
    seen, todo = set(), [fn]
    while todo:
        f = todo.pop()
        if f.name in seen:
            continue
        seen.add(f.name)
        if _has_assert(f):
            return True
        todo += [helpers[c] for c in _called_names(f) if c in helpers]
    return False


def _called_names(fn: ast.AST) -> set[str]:
    return {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}


def _identifiers(fn: ast.AST) -> set[str]:
    """Names, attributes, keywords and name-like strings used in fn (docstrings excluded: a tag
    or a name in prose does not reach code)."""
    out: set[str] = set()
    docs = {id(d.body[0].value) for d in ast.walk(fn)
            if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and d.body
            and isinstance(d.body[0], ast.Expr) and isinstance(d.body[0].value, ast.Constant)}
    for n in ast.walk(fn):
        if id(n) in docs:
            continue
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.keyword) and n.arg:
            out.add(n.arg)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            # getattr(mod, "name"), parametrize("variant", [...]), a script run by its file name
            m = re.fullmatch(r"(?:[\w./-]*/)?([A-Za-z_]\w*)(?:\.py)?", n.value)
            if m:
                out.add(m.group(1))
    return out


def _is_slow(node) -> bool:
    return any("slow" in ast.unparse(d) for d in getattr(node, "decorator_list", []))


def _module_is_slow(tree: ast.Module) -> bool:
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets
        ):
            return "slow" in ast.unparse(n.value)
    return False


def resolve_tests(cell: str, spec: str, index: TestIndex, previous: list[TestRef]) -> list[TestRef]:
    """Resolve every test token of a tests cell (see the module docstring)."""
    if cell.strip().lower().rstrip(".") in ("same", "ditto", "as above"):
        return [TestRef(text=t.text, funcs=t.funcs, error=t.error) for t in previous]
    refs: list[TestRef] = []
    current: Path | None = None
    for raw in BACKTICK.findall(cell):
        tok = raw.strip()
        file_part, sep, name = tok.partition("::")
        name = re.sub(r"\[.*\]$", "", name)            # a parametrized id -> the function
        if not sep:
            if tok.endswith(".py"):
                file_part, name = tok, ""
            elif re.match(r"^test\w*$", tok):
                file_part, name = "", tok
            else:
                continue                                # fixtures, data files: not tests
        if file_part and not Path(file_part).name.startswith("test_"):
            continue                                    # e.g. fixtures/make_reference.py
        ref = TestRef(text=tok)
        if file_part:
            files = index.find_file(file_part, spec)
            if len(files) != 1:
                ref.error = (f"no test file {file_part}" if not files else
                             f"{file_part} is ambiguous: " + ", ".join(str(f.relative_to(WHERE.root)) for f in files))
                refs.append(ref)
                continue
            current = files[0]
            if not name:
                ref.funcs = list(index.files[current].values())
                if not ref.funcs:
                    ref.error = f"{file_part} has no tests"
                refs.append(ref)
                continue
        if not name:
            ref.error = "empty test name"
        elif current is not None and name in index.files[current]:
            ref.funcs = [index.files[current][name]]
        elif sep and not file_part and current is None:
            ref.error = f"::{name} continues no file"
        elif sep and file_part:
            ref.error = f"{file_part} has no test {name}"
        else:
            hits = index.find_test(name, spec)
            if len(hits) == 1:
                ref.funcs = hits
            elif not hits:
                ref.error = f"no test named {name}" + (
                    f" in {current.relative_to(WHERE.root)} or elsewhere" if current else "")
            else:
                ref.error = f"{name} is ambiguous: " + ", ".join(h.nodeid for h in hits)
        refs.append(ref)
    return refs
