"""`refimpl spec`: every spec ID with its paper reference, the code and the tests (issue 10).

Reads the requirement tables of spec/*.md (a Markdown table whose header has an `ID`, a
`code` and a `test(s)` column) and resolves every reference mechanically:

- code: each backticked token of the code cell is a path (`ring/ntt.py`, `refimpl/bench/aby3.py`,
  `ring/rns.py::mod_down`), a module (`arith`), a dotted symbol (`shares.share_input`,
  `Bootstrapper.coeffs_to_slots/slots_to_coeffs`, `matmul.alg6_*`) or a bare name that
  continues the previous token's module (`add_key_layer` after `matmul.alg6_*`). Modules are
  looked up in refimpl/<spec name>/ first, then in all of refimpl/; symbols are imported and
  fetched with getattr. Call arguments (`exp_neg(order=3)`) are ignored.
- tests: `file.py::test_name`; `::test_name` and bare `test_name` continue the previous file
  of the cell (else the unique test of that name, preferring tests/<spec name>/); a bare
  `test_file.py` means every test in that file; the cell `same` repeats the row above.
  Other tokens (fixtures, data files) are not test references.

The counting rule (a test counts for an ID only if it exercises the behaviour the row states,
not because it carries the tag), checked mechanically:

1. the test function exists (ast of the test file);
2. its body checks something: an `assert`, `pytest.raises`/`pytest.warns`, an `assert_*` call
   (np.testing), directly or through a helper function of the same test file;
3. it reaches the row's code: statically, one of the code's names (the symbol, or a name defined
   by a cited module) occurs in the test, the same-file helpers it calls or the fixtures it
   takes; with `--run`, the test is run under pytest with a profiler and must pass and execute
   a function of the cited code (a test that runs the code in a subprocess, e.g. an example
   script, must pass; its reach stays the static one, which the report says).

An ID with no counting test is untested; `refimpl spec` exits 1 if any ID is untested or any
reference does not resolve. Reference: issue 10; STYLE.md section 3 (IDs in spec/).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import fnmatch
import importlib
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SPEC_DIR = ROOT / "spec"
PACKAGE_DIR = ROOT / "refimpl"
TESTS_DIR = ROOT / "tests"

_BACKTICK = re.compile(r"`([^`]+)`")
_ASSERT_FUNCS = {"raises", "warns", "deprecated_call"}
_SPAWN = {"run", "Popen", "check_call", "check_output", "call"}


class SpecError(ValueError):
    """A spec file that cannot be read as requirement tables."""


# --------------------------------------------------------------------------------------------
# Markdown tables


@dataclass
class Row:
    """One requirement row: its ID and the raw cells."""

    spec: str            # spec file stem: "ckks", "nexus", ...
    id: str
    requirement: str
    reference: str       # the source/reference column, else the section heading
    code_cell: str
    tests_cell: str
    line: int
    code: list[CodeRef] = field(default_factory=list)
    tests: list[TestRef] = field(default_factory=list)
    tagged: list[str] = field(default_factory=list)   # tests whose docstring names this ID

    @property
    def tagged_not_cited(self) -> list[str]:
        cited = {f.nodeid for t in self.tests for f in t.funcs}
        return [n for n in self.tagged if n not in cited]

    @property
    def counting(self) -> list[TestRef]:
        return [t for t in self.tests if t.counts]

    @property
    def tested(self) -> bool:
        return bool(self.counting)

    @property
    def errors(self) -> list[str]:
        errs = [f"code `{c.text}`: {c.error}" for c in self.code if c.error]
        errs += [f"test `{t.text}`: {t.error}" for t in self.tests if t.error]
        if not self.code:
            errs.append("no code reference")
        return errs


def split_cells(line: str) -> list[str]:
    """Cells of a Markdown table line; a `|` inside backticks or escaped as \\| stays in its cell."""
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells, cur, tick = [], [], False
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] == "|":
            cur.append("|")
            i += 2
            continue
        if ch == "`":
            tick = not tick
        if ch == "|" and not tick:
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    cells.append("".join(cur).strip())
    return cells


def _columns(header: list[str]) -> dict[str, int] | None:
    """Column indices of a requirement table, or None if the header is not one."""
    low = [h.strip().lower() for h in header]
    if not low or low[0] != "id":
        return None
    cols = {"id": 0}
    for i, h in enumerate(low):
        if h == "code":
            cols["code"] = i
        elif h in ("test", "tests"):
            cols["tests"] = i
        elif h == "requirement":
            cols["requirement"] = i
        elif h in ("source", "reference", "source/reference", "paper", "paper reference"):
            cols["reference"] = i
    if "code" not in cols or "tests" not in cols:
        return None
    return cols


def parse_spec(path: Path) -> list[Row]:
    """Every requirement row of one spec file, in file order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows: list[Row] = []
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(
            r"^\s*\|?\s*:?-{3,}", lines[i + 1]
        ):
            cols = _columns(split_cells(line))
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                if cols is not None:
                    cells = split_cells(lines[i])
                    if len(cells) < len(split_cells(line)):
                        raise SpecError(
                            f"{path.name}:{i + 1}: row has {len(cells)} cells, the header "
                            f"{len(split_cells(line))}"
                        )
                    ref = cells[cols["reference"]] if "reference" in cols else ""
                    if ref.lower().rstrip(".") in ("same", "ditto") and rows and rows[-1].spec == path.stem:
                        ref = rows[-1].reference
                    rows.append(Row(
                        spec=path.stem,
                        id=cells[0].strip("` "),
                        requirement=cells[cols["requirement"]] if "requirement" in cols else cells[1],
                        reference=ref or heading,
                        code_cell=cells[cols["code"]],
                        tests_cell=cells[cols["tests"]],
                        line=i + 1,
                    ))
                i += 1
            continue
        i += 1
    return rows


# --------------------------------------------------------------------------------------------
# Code references


@dataclass
class CodeRef:
    """One code token resolved to a module, a directory or symbols (functions, classes)."""

    text: str
    module: ModuleType | None = None
    path: Path | None = None          # the module file, or a directory
    attrs: list[str] = field(default_factory=list)   # dotted names inside the module
    error: str | None = None

    def names(self) -> set[str]:
        """The identifiers a test must mention to reach this code (static check)."""
        if self.attrs:
            out = {a.split(".")[-1] for a in self.attrs} | {a.split(".")[0] for a in self.attrs}
            for a in self.attrs:                 # a class: its public methods reach it too
                obj = self.module
                for part in a.split("."):
                    obj = getattr(obj, part, None)
                if isinstance(obj, type):
                    out |= {n for n, v in vars(obj).items() if callable(v) and not n.startswith("_")}
            return out
        if self.path is not None and self.path.is_dir():
            files = list(self.path.rglob("*.py"))
            return set().union(*(_defined_names(p) for p in files)) | {p.stem for p in files}
        if self.path is not None:
            return _defined_names(self.path) | {self.path.stem}
        return set()

    def matches(self, filename: str, qualname: str) -> bool:
        """Whether an executed function (file, qualified name) belongs to this code."""
        if self.path is None:
            return False
        f = Path(filename).resolve()
        if self.path.is_dir():
            return self.path in f.parents
        if f != self.path.resolve():
            return self.attrs and any(_defined_elsewhere(self, a, f, qualname) for a in self.attrs)
        if not self.attrs:
            return True
        return any(qualname == a or qualname.startswith(a + ".") for a in self._prefixes())

    def _prefixes(self) -> list[str]:
        """Qualified-name prefixes of the functions that implement the cited symbols: a symbol
        that is data (a dataclass field, a constant) stands for the methods of its owner."""
        out = []
        for a in self.attrs:
            obj, parts = self.module, a.split(".")
            for part in parts:
                obj = getattr(obj, part, None)
            out.append(a if callable(obj) else ".".join(parts[:-1]) or a)
        return out


def _defined_elsewhere(ref: CodeRef, attr: str, filename: Path, qualname: str) -> bool:
    """A symbol re-exported by the cited module but defined in another file."""
    obj = ref.module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    code = _code_of(obj)
    if code is None:
        return False
    return Path(code.co_filename).resolve() == filename and (
        qualname == code.co_qualname or qualname.startswith(code.co_qualname + ".")
    )


def _code_of(obj):
    obj = getattr(obj, "py_func", obj)       # numba dispatchers keep the Python function
    if isinstance(obj, type):
        init = obj.__dict__.get("__init__")
        code = getattr(init, "__code__", None)
        if code is not None:
            return code.replace(co_qualname=obj.__qualname__)
        return None
    return getattr(obj, "__code__", None)


_DEFINED: dict[Path, set[str]] = {}


def _defined_names(path: Path) -> set[str]:
    """Top-level functions, classes and methods defined in a Python file."""
    if path not in _DEFINED:
        names: set[str] = set()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            tree = ast.Module(body=[], type_ignores=[])
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not node.name.startswith("_"):
                    names.add(node.name)
                if isinstance(node, ast.ClassDef):
                    names |= {n.name for n in node.body if isinstance(n, ast.FunctionDef)
                              and not n.name.startswith("_")}
        _DEFINED[path] = names
    return _DEFINED[path]


def _module_name(path: Path) -> str:
    rel = path.resolve().relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _find_modules(stem: str, spec: str) -> list[Path]:
    """refimpl module files named `stem`.py (or packages `stem`/), refimpl/<spec>/ first."""
    hits = [p for p in PACKAGE_DIR.rglob(f"{stem}.py")]
    hits += [p / "__init__.py" for p in PACKAGE_DIR.rglob(stem) if (p / "__init__.py").exists()]
    pref = [p for p in hits if (PACKAGE_DIR / spec) in p.parents]
    return pref or hits


def _find_definers(name: str, spec: str) -> list[Path]:
    """refimpl module files that define `name` at top level, refimpl/<spec>/ first."""
    hits = [p for p in sorted(PACKAGE_DIR.rglob("*.py")) if name in _defined_names(p)]
    pref = [p for p in hits if (PACKAGE_DIR / spec) in p.parents]
    return pref or hits


def _import(path: Path) -> ModuleType:
    return importlib.import_module(_module_name(path))


def _resolve_attrs(module: ModuleType, dotted: str) -> tuple[list[str], str | None]:
    """Expand `A.b/c` and globs `alg6_*` into attribute paths that exist in the module."""
    head, _, last = dotted.rpartition(".")
    out = []
    for alt in last.split("/"):
        full = f"{head}.{alt}" if head else alt
        if "*" in alt:
            parent = module
            for part in head.split(".") if head else []:
                parent = getattr(parent, part, None)
            found = sorted(n for n in dir(parent) if fnmatch.fnmatchcase(n, alt)) if parent else []
            if not found:
                return [], f"no name matching {full} in {module.__name__}"
            out += [f"{head}.{n}" if head else n for n in found]
            continue
        obj = module
        for part in full.split("."):
            if hasattr(obj, part):
                obj = getattr(obj, part)
            elif dataclasses.is_dataclass(obj) and part in {f.name for f in dataclasses.fields(obj)}:
                obj = None                      # a dataclass field: no class attribute
            else:
                return [], f"{module.__name__} has no attribute {full}"
        out.append(full)
    return out, None


def resolve_code(cell: str, spec: str) -> list[CodeRef]:
    """Resolve every backticked token of a code cell (see the module docstring)."""
    refs: list[CodeRef] = []
    last_module: ModuleType | None = None
    for raw in _BACKTICK.findall(cell):
        text = raw.strip()
        tok = re.sub(r"\(.*?\)", "", text).strip()       # exp_neg(order=3) -> exp_neg
        ref = CodeRef(text=text)
        try:
            if "::" in tok or "/" in tok.split(".")[0] or tok.endswith(".py") or tok.endswith("/"):
                file_part, _, sym = tok.partition("::")
                p = _path_in_repo(file_part, spec)
                if p is None:
                    ref.error = f"no such file or directory {file_part}"
                elif p.is_dir():
                    ref.path = p
                else:
                    ref.path, ref.module = p, _import(p)
                    last_module = ref.module
                    if sym:
                        ref.attrs, ref.error = _resolve_attrs(ref.module, sym)
            else:
                first, _, rest = tok.partition(".")
                mods = _find_modules(first, spec)
                if mods:
                    if len(mods) > 1:
                        raise LookupError(f"module name {first} is ambiguous: "
                                          + ", ".join(_module_name(m) for m in mods))
                    ref.path, ref.module = mods[0], _import(mods[0])
                    last_module = ref.module
                    if rest:
                        ref.attrs, ref.error = _resolve_attrs(ref.module, rest)
                elif last_module is not None and (
                    hasattr(last_module, first)
                    or ("*" in first and any(fnmatch.fnmatchcase(n, first) for n in dir(last_module)))
                ):
                    ref.module = last_module
                    ref.path = Path(last_module.__file__)
                    ref.attrs, ref.error = _resolve_attrs(ref.module, tok)
                else:
                    defs = _find_definers(first, spec)
                    if not defs:
                        ref.error = f"no module or top-level definition named {first} in refimpl/"
                    elif len(defs) > 1:
                        ref.error = (f"{first} is defined in several modules: "
                                     + ", ".join(_module_name(d) for d in defs))
                    else:
                        ref.path, ref.module = defs[0], _import(defs[0])
                        last_module = ref.module
                        ref.attrs, ref.error = _resolve_attrs(ref.module, tok)
        except LookupError as e:
            ref.error = str(e)
        except ImportError as e:
            ref.error = f"import failed: {e}"
        refs.append(ref)
    return refs


def _path_in_repo(text: str, spec: str) -> Path | None:
    """A path as written, relative to the repo root, refimpl/ or refimpl/<spec>/."""
    text = text.rstrip("/")
    for base in (ROOT, PACKAGE_DIR, PACKAGE_DIR / spec):
        p = base / text
        if p.exists():
            return p.resolve()
    return None


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
        f = self.file.relative_to(ROOT) if ROOT in self.file.parents else self.file
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

    def __init__(self, tests_dir: Path = TESTS_DIR):
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
        for base in (ROOT, self.tests_dir, self.tests_dir / spec):
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
    for raw in _BACKTICK.findall(cell):
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
                             f"{file_part} is ambiguous: " + ", ".join(str(f.relative_to(ROOT)) for f in files))
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
                    f" in {current.relative_to(ROOT)} or elsewhere" if current else "")
            else:
                ref.error = f"{name} is ambiguous: " + ", ".join(h.nodeid for h in hits)
        refs.append(ref)
    return refs


# --------------------------------------------------------------------------------------------
# The whole check


def check(spec_dir: Path = SPEC_DIR, tests_dir: Path = TESTS_DIR) -> list[Row]:
    """Parse every spec/*.md, resolve code and test references, apply the static counting rule."""
    index = TestIndex(tests_dir)
    rows: list[Row] = []
    for path in sorted(spec_dir.glob("*.md")):
        previous: list[TestRef] = []
        for row in parse_spec(path):
            row.code = resolve_code(row.code_cell, row.spec)
            row.tests = resolve_tests(row.tests_cell, row.spec, index, previous)
            previous = row.tests
            code_names = set().union(*(c.names() for c in row.code if not c.error)) if row.code else set()
            for t in row.tests:
                t.reaching = [f for f in t.funcs if f.names & code_names]
                t.reaches = bool(t.reaching)
            rows.append(row)
    seen: dict[str, Row] = {}
    for r in rows:
        if r.id in seen:
            raise SpecError(f"duplicate spec ID {r.id}: spec/{seen[r.id].spec}.md:{seen[r.id].line} "
                            f"and spec/{r.spec}.md:{r.line}")
        seen[r.id] = r
    # the tags (IDs named in test docstrings): reported beside the citations, never counted
    for fs in index.files.values():
        for f in fs.values():
            doc = ast.get_docstring(f.node) or ""
            for tag in re.findall(r"[A-Z][A-Z0-9]*(?:-[A-Z0-9/]+)+", doc):
                if tag in seen:
                    seen[tag].tagged.append(f.nodeid)
    return rows


def run_tests(rows: list[Row], marker: str = "") -> None:
    """Run every referenced test under pytest with a profiler; record outcome and reached code."""
    import pytest

    nodeids = sorted({f.nodeid for r in rows for t in r.tests for f in t.funcs})
    outcome: dict[str, str] = {}
    executed: dict[str, set[tuple[str, str]]] = {}

    # cited functions behind functools caches: a cache hit runs no Python frame, so their calls
    # are counted by the cache's own statistics instead
    cached = {}
    for r in rows:
        for c in r.code:
            for a in c.attrs if not c.error else ():
                obj = c.module
                for part in a.split("."):
                    obj = getattr(obj, part, None)
                code = getattr(getattr(obj, "__wrapped__", None), "__code__", None)
                if hasattr(obj, "cache_info") and code is not None:
                    cached[id(obj)] = (obj, (code.co_filename, code.co_qualname))

    def cache_calls() -> dict[int, int]:
        return {k: o.cache_info().hits + o.cache_info().misses for k, (o, _) in cached.items()}

    active: list[set] = []                        # the open recordings (a call, fixture setups)
    by_fixture: dict[int, set] = {}               # id(fixturedef) -> what its setup executed

    def prof(frame, event, arg):
        if event == "call":
            key = (frame.f_code.co_filename, frame.f_code.co_qualname)
            for rec in active:
                rec.add(key)

    @contextlib.contextmanager
    def recording(into: set):
        before = cache_calls()
        active.append(into)
        if len(active) == 1:
            sys.setprofile(prof)
            threading.setprofile(prof)            # the ABY3 simulator runs each party in a thread
        try:
            yield
        finally:
            active.remove(into)
            if not active:
                sys.setprofile(None)
                threading.setprofile(None)
            after = cache_calls()
            into |= {cached[k][1] for k in cached if after[k] != before[k]}

    class Recorder:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_fixture_setup(self, fixturedef, request):
            """A shared fixture's work (e.g. a module-scoped protocol run) counts for every test using it."""
            seen = by_fixture.setdefault(id(fixturedef), set())
            with recording(seen):
                yield

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_call(self, item):
            seen: set[tuple[str, str]] = set()
            with recording(seen):
                yield
            defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}) or {}
            for name in getattr(item, "fixturenames", ()):
                for fd in defs.get(name, ()):
                    seen |= by_fixture.get(id(fd), set())
            base = _base_nodeid(item.nodeid)
            executed[base] = executed.get(base, set()) | seen

        def pytest_runtest_logreport(self, report):
            base = _base_nodeid(report.nodeid)
            if report.when == "call" or report.outcome != "passed":
                prev = outcome.get(base)
                if prev in (None, "passed") or report.outcome == "failed":
                    outcome[base] = report.outcome

    args = ["-q", "-p", "no:cacheprovider", "-m", marker, "--rootdir", str(ROOT), *nodeids]
    pytest.main(args, plugins=[Recorder()])
    for r in rows:
        for t in r.tests:
            if not t.funcs:
                continue
            outs = {f.nodeid: outcome.get(f.nodeid, "not run") for f in t.funcs}
            t.run_ok = [
                f for f in t.funcs if outs[f.nodeid] == "passed" and (any(
                    c.matches(fn, q) for c in r.code if not c.error
                    for fn, q in executed.get(f.nodeid, ())) or f.subprocess)  # child: static reach only
            ]
            t.outcome = "passed" if "passed" in outs.values() else next(iter(outs.values()))
            t.reached_run = bool(t.run_ok)


def _base_nodeid(nodeid: str) -> str:
    return re.sub(r"\[.*\]$", "", nodeid)


# --------------------------------------------------------------------------------------------
# Output


def summary(rows: list[Row]) -> dict:
    untested = [r.id for r in rows if not r.tested]
    unresolved = [f"{r.id}: {e}" for r in rows for e in r.errors]
    only_slow = [r.id for r in rows if r.tested and all(f.slow for t in r.counting for f in t.counting)]
    return {
        "ids": len(rows),
        "tested": len(rows) - len(untested),
        "untested": untested,
        "unresolved": unresolved,
        "tested_only_by_slow_tests": only_slow,
        "tagged_not_cited": [f"{r.id}: {n}" for r in rows for n in r.tagged_not_cited],
        "ok": not untested and not unresolved,
    }


def as_json(rows: list[Row]) -> dict:
    return {
        "rows": [
            {
                "spec": f"spec/{r.spec}.md",
                "line": r.line,
                "id": r.id,
                "reference": r.reference,
                "requirement": r.requirement,
                "code": [{"ref": c.text, "module": c.module.__name__ if c.module else None,
                          "symbols": c.attrs, "error": c.error} for c in r.code],
                "tests": [{"ref": t.text, "nodeids": [f.nodeid for f in t.funcs],
                           "counting": [f.nodeid for f in t.counting],
                           "asserts": t.asserts, "reaches_code": t.reaches, "outcome": t.outcome,
                           "executed_code": t.reached_run, "counts": t.counts,
                           "why_not": t.why_not or None} for t in r.tests],
                "tested": r.tested,
            }
            for r in rows
        ],
        "summary": summary(rows),
    }


def _short(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "~"


def render(rows: list[Row], verbose: bool = False) -> str:
    """One table per spec file (ID, status, reference, code, tests), then the summary."""
    out: list[str] = []
    for spec in dict.fromkeys(r.spec for r in rows):
        out.append(f"\nspec/{spec}.md")
        out.append(f"{'ID':<26} {'status':<10} {'reference':<34} {'code':<34} tests")
        for r in (r for r in rows if r.spec == spec):
            status = "ok" if r.tested and not r.errors else ("UNTESTED" if not r.tested else "REF-ERROR")
            code = ", ".join(c.text if not c.error else f"!{c.text}" for c in r.code) or "-"
            tests = ", ".join(
                (t.funcs[0].name if len(t.funcs) == 1 else t.text)
                + ("" if t.counts else f" [x: {t.why_not}]")
                + (" (slow)" if t.funcs and all(f.slow for f in t.funcs) else "")
                + (" (subprocess: static reach)" if t.run_ok and all(f.subprocess for f in t.run_ok) else "")
                for t in r.tests
            ) or "-"
            if verbose:
                out.append(f"{r.id:<26} {status:<10} {_short(r.reference, 34):<34} {_short(code, 34):<34} {tests}")
            else:
                out.append(f"{r.id:<26} {status:<10} {_short(r.reference, 34):<34} "
                           f"{_short(code, 34):<34} {_short(tests, 90)}")
            for e in r.errors:
                out.append(f"{'':<26} error: {e}")
    s = summary(rows)
    out.append("")
    out.append(f"IDs: {s['ids']}, tested: {s['tested']}, untested: {len(s['untested'])}, "
               f"unresolved references: {len(s['unresolved'])}")
    if s["tested_only_by_slow_tests"]:
        out.append("tested only by slow tests (run with -m slow): " + ", ".join(s["tested_only_by_slow_tests"]))
    if s["tagged_not_cited"]:
        out.append(f"{len(s['tagged_not_cited'])} tests name an ID in their docstring without being cited "
                   "in its row (not counted; see --json)")
    if s["untested"]:
        out.append("untested: " + ", ".join(s["untested"]))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="refimpl spec", description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true",
                    help="also run the referenced tests (pytest, profiled): failed ones do not count")
    ap.add_argument("-m", "--marker", default="",
                    help="pytest marker expression for --run (default '': slow tests too)")
    ap.add_argument("--json", default=None, help="write the rows and the summary to this file")
    ap.add_argument("--spec-dir", default=str(SPEC_DIR), help=argparse.SUPPRESS)
    ap.add_argument("--tests-dir", default=str(TESTS_DIR), help=argparse.SUPPRESS)
    ap.add_argument("-v", "--verbose", action="store_true", help="do not shorten the tests column")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:            # `refimpl spec -- --json FILE`: the CLI passes the separator on
        argv = argv[1:]
    args = ap.parse_args(argv)
    rows = check(Path(args.spec_dir), Path(args.tests_dir))
    if args.run:
        run_tests(rows, args.marker)
    print(render(rows, args.verbose))
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(rows), indent=1) + "\n", encoding="utf-8")
    return 0 if summary(rows)["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
