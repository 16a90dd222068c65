"""Code references of a spec row: paths, modules, dotted symbols, resolved by import."""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from refimpl.spec.paths import PACKAGE_DIR, WHERE

BACKTICK = re.compile(r"`([^`]+)`")  # one reference per backticked token

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
    path = path.resolve()
    root = PACKAGE_DIR.parent if PACKAGE_DIR.parent in path.parents else WHERE.root
    rel = path.relative_to(root).with_suffix("")
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
    for raw in BACKTICK.findall(cell):
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
    for base in (PACKAGE_DIR.parent, PACKAGE_DIR, PACKAGE_DIR / spec, WHERE.root):
        p = base / text
        if p.exists():
            return p.resolve()
    return None
