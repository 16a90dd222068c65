"""The checker's output: summary, JSON document, text tables."""

from __future__ import annotations

from refimpl.spec.tables import Row

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
