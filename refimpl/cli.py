"""The `refimpl` command (DESIGN.md section 2).

Subcommands dispatch lazily to their modules so that `refimpl --help` stays instant and a
part that is not built yet says so instead of failing at import.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHES = ("ckks", "aby3", "nexus", "bert")


def _bench(args: argparse.Namespace) -> int:
    try:
        mod = importlib.import_module(f"refimpl.bench.{args.target}")
    except ModuleNotFoundError as e:
        if e.name == f"refimpl.bench.{args.target}":
            print(f"refimpl bench {args.target}: not built yet", file=sys.stderr)
            return 2
        raise
    return mod.main(quick=args.quick, json_path=args.json, threads=args.threads) or 0


def _demo(args: argparse.Namespace) -> int:
    from refimpl import demo

    return demo.main(sentence=args.sentence, quick=args.quick) or 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refimpl", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="the main job: secure inference end to end on embedded defaults")
    d.add_argument("--sentence", default=None, help="your own text to classify")
    d.add_argument("--quick", action="store_true", help="smallest settings (used by the tests)")
    d.set_defaults(func=_demo)

    b = sub.add_parser("bench", help="benchmarks, printing JSON")
    b.add_argument("target", choices=BENCHES)
    b.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    b.add_argument("--json", default=None, help="also write one JSON document to this file")
    b.add_argument("--threads", default=None, help="'1', 'default' or 'both' (default: both)")
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
