"""The whole check: parse every spec file, resolve references, optionally run the cited tests."""

from __future__ import annotations

import ast
import contextlib
import re
import sys
import threading
from pathlib import Path

from refimpl.spec.code import resolve_code
from refimpl.spec.paths import WHERE
from refimpl.spec.tables import Row, SpecError, parse_spec
from refimpl.spec.testrefs import TestIndex, TestRef, resolve_tests

# --------------------------------------------------------------------------------------------
# The whole check


def check(spec_dir: Path | None = None, tests_dir: Path | None = None) -> list[Row]:
    """Parse every spec/*.md, resolve code and test references, apply the static counting rule.

    Defaults: spec/ and tests/ of the checkout being checked (WHERE.root).
    """
    spec_dir = WHERE.spec_dir if spec_dir is None else spec_dir
    tests_dir = WHERE.tests_dir if tests_dir is None else tests_dir
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

    args = ["-q", "-p", "no:cacheprovider", "-m", marker, "--rootdir", str(WHERE.root), *nodeids]
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
