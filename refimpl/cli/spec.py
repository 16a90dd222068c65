"""`refimpl spec`: every spec ID with its paper reference, the code and the tests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from refimpl import spec  # lazy: keeps `refimpl --help` instant

    if args.repo:
        spec.WHERE.root = Path(args.repo).resolve()
    spec_dir = Path(args.spec_dir) if args.spec_dir else spec.WHERE.spec_dir
    tests_dir = Path(args.tests_dir) if args.tests_dir else spec.WHERE.tests_dir
    if not spec_dir.is_dir() or not any(spec_dir.glob("*.md")):
        print(f"refimpl spec: no spec tables in {spec_dir}: run it in a checkout of the repository "
              "or pass --repo DIR", file=sys.stderr)
        return 1
    rows = spec.check(spec_dir, tests_dir)
    if not rows:
        print(f"refimpl spec: no spec IDs found in {spec_dir}/*.md", file=sys.stderr)
        return 1
    if args.run:
        spec.run_tests(rows, args.marker)
    print(spec.render(rows, args.verbose))
    if args.json:
        Path(args.json).write_text(json.dumps(spec.as_json(rows), indent=1) + "\n", encoding="utf-8")
    return 0 if spec.summary(rows)["ok"] else 1


def register(sub) -> None:
    ap = sub.add_parser("spec", help="every spec ID with its paper reference, code and tests",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--repo", default=None,
                    help="the checkout whose spec/ and tests/ to check (default: the one holding the package, "
                         "else the working directory)")
    ap.add_argument("--run", action="store_true",
                    help="also run the referenced tests (pytest, profiled): failed ones do not count")
    ap.add_argument("-m", "--marker", default="",
                    help="pytest marker expression for --run ('' runs slow tests too)")
    ap.add_argument("--json", default=None, help="write the rows and the summary to this file")
    ap.add_argument("--spec-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tests-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("-v", "--verbose", action="store_true", help="do not shorten the tests column")
    ap.set_defaults(func=run)
