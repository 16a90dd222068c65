"""`refimpl bench {ckks,aby3,nexus,bert}`: benchmarks, JSON out."""

from __future__ import annotations

import argparse
import importlib
import sys

from refimpl.cli.common import add_json

BENCHES = ("ckks", "aby3", "nexus", "bert")


def run(args: argparse.Namespace) -> int:
    mod = importlib.import_module(f"refimpl.bench.{args.target}")  # lazy: keeps `refimpl --help` instant
    extra = {"use_peers": False} if args.no_peers else {}
    if args.no_peers and args.target != "ckks":
        print(f"refimpl bench {args.target}: --no-peers applies to ckks only (the other benches install no peers)",
              file=sys.stderr)
        extra = {}
    return mod.main(quick=args.quick, json_path=args.json, threads=args.threads, **extra) or 0


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks, printing JSON")
    b.add_argument("target", choices=BENCHES)
    b.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    add_json(b)
    b.add_argument("--threads", default="both", choices=("1", "default", "both"), help="numba threads of the runs")
    b.add_argument("--no-peers", action="store_true",
                   help="refimpl alone: create and run no peer library venv (ckks: OpenFHE, SEAL, ...)")
    b.set_defaults(func=run)
