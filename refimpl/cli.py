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
    a = sub.add_parser("aby3", help="ABY3 parties as separate processes over TCP")
    asub = a.add_subparsers(dest="aby3_command", required=True)
    pp = asub.add_parser("party", help="run one party of a demo encoder layer")
    pp.add_argument("--id", type=int, required=True)
    pp.add_argument("--peers", required=True, help="host:port,host:port,host:port for parties 0, 1, 2")
    pp.add_argument("--seed", type=int, default=0)
    pp.set_defaults(func=_aby3_party)
    return p


def _aby3_party(args: argparse.Namespace) -> int:
    from refimpl.aby3 import tcp

    return tcp.party_main(args.id, args.peers.split(","), seed=args.seed) or 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
