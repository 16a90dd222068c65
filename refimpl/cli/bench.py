"""`refimpl bench {ckks,aby3,nexus,bert}`: benchmarks, JSON out."""

from __future__ import annotations

import argparse
import importlib

BENCHES = ("ckks", "aby3", "nexus", "bert")


def run(args: argparse.Namespace) -> int:
    mod = importlib.import_module(f"refimpl.bench.{args.target}")  # lazy: keeps `refimpl --help` instant
    return mod.main(quick=args.quick, json_path=args.json, threads=args.threads) or 0


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks, printing JSON", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("target", choices=BENCHES)
    b.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    b.add_argument("--json", default=None, help="also write one JSON document to this file")
    b.add_argument("--threads", default=None, help="'1', 'default' or 'both' (default: both)")
    b.set_defaults(func=run)
