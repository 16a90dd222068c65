"""The robustness table of docs/robustness.md (ours): `python -m tests.security.fuzz_table [--write]`.

Runs every case of tests/security/cli_fuzz.py (the command line) and tests/security/wire_fuzz.py
(NEXUS frames, headers, blobs, TCP streams) and tests/security/operand_fuzz.py (CKKS parameters
and operands) and counts, per category: inputs tried, clean errors,
tracebacks, hangs, silently wrong (accepted or exit code 0). --write replaces the table in
docs/robustness.md (between its markers); --list also prints every case with its message.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

from .cli_fuzz import CASES, run_case
from .operand_fuzz import run_operand_cases
from .wire_fuzz import run_wire_cases

DOC = Path(__file__).resolve().parents[2] / "docs" / "robustness.md"
BEGIN, END = "<!-- fuzz table: begin -->", "<!-- fuzz table: end -->"
COLUMNS = ("clean", "traceback", "hang", "silent")


def rows() -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(CASES):
            out.append(run_case(c, Path(tmp) / str(i)))
    return out + run_wire_cases() + run_operand_cases()


def table(results: list[dict]) -> str:
    by = collections.defaultdict(collections.Counter)
    for r in results:
        by[r["category"]][r["outcome"]] += 1
    lines = ["| category | inputs tried | clean errors | tracebacks | hangs | silently wrong |",
             "|---|---:|---:|---:|---:|---:|"]
    total = collections.Counter()
    for cat, c in by.items():
        total.update(c)
        lines.append(f"| {cat} | {sum(c.values())} | " + " | ".join(str(c[k]) for k in COLUMNS) + " |")
    lines.append(f"| **all** | **{sum(total.values())}** | " + " | ".join(f"**{total[k]}**" for k in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.security.fuzz_table", description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"replace the table in {DOC.name}")
    ap.add_argument("--list", action="store_true", help="print every case and its message")
    a = ap.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    results = rows()
    text = table(results)
    print(text)
    if a.list:
        for r in results:
            print(f"{r['outcome']:9s} {r['category']:12s} {r['name']}: {r['message'][:160]}")
    if a.write:
        doc = DOC.read_text()
        i, j = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOC.write_text(doc[:i] + "\n" + text + "\n" + doc[j:])
    bad = sum(r["outcome"] != "clean" for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
