"""`refimpl bench {ckks,aby3,nexus,bert,csprng,aby3-tls}`: benchmarks, JSON out."""

from __future__ import annotations

import argparse
import importlib
import sys

from refimpl.cli.common import add_json

BENCHES = ("ckks", "aby3", "nexus", "bert", "csprng", "aby3-tls")  # module: refimpl.bench.<target, "-" as "_">


def run(args: argparse.Namespace) -> int:
    # lazy: keeps `refimpl --help` instant
    mod = importlib.import_module(f"refimpl.bench.{args.target.replace('-', '_')}")
    extra = {"use_peers": False} if args.no_peers else {}
    if args.no_peers and args.target != "ckks":
        print(f"refimpl bench {args.target}: --no-peers applies to ckks only (the other benches install no peers)",
              file=sys.stderr)
        extra = {}
    if args.model is not None and args.target != "aby3-tls":
        raise SystemExit(f"refimpl bench {args.target}: --model applies to aby3-tls only")
    if args.target == "aby3-tls":
        extra["model"] = args.model or "tiny"
    return mod.main(quick=args.quick, json_path=args.json, threads=args.threads, **extra) or 0


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks, printing JSON")
    b.add_argument("target", choices=BENCHES)
    b.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    add_json(b)
    b.add_argument("--threads", default="both", choices=("1", "default", "both"), help="numba threads of the runs")
    b.add_argument("--no-peers", action="store_true",
                   help="refimpl alone: create and run no peer library venv (ckks: OpenFHE, SEAL, ...)")
    b.add_argument("--model", default=None, help="aby3-tls: tiny or a shipped model name (default: tiny)")
    b.set_defaults(func=run)
