"""`refimpl bench {ckks,aby3,nexus,bert,csprng,aby3-tls,mac,bootstrap,bootstrap-pair,peers}`: benchmarks, JSON out."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from refimpl.cli.common import add_json, write_json

BENCHES = ("ckks", "aby3", "nexus", "bert", "csprng", "aby3-tls", "mac")  # module: refimpl.bench.<target, "-" as "_">
JOBS = {"bootstrap": "bootjob", "bootstrap-pair": "bootpair"}  # one run from a JSON config: module refimpl.bench.<job>


def run_job(args: argparse.Namespace) -> int:
    """`bootstrap` / `bootstrap-pair`: one bootstrap run (or refimpl's beside OpenFHE's) from --config."""
    if args.config is None:
        raise SystemExit(f"refimpl bench {args.target}: give the run's settings as --config JSON "
                         "(e.g. '{\"preset\": \"128-2^16-dense\", \"reps\": 3, \"threads\": \"default\"}')")
    try:
        cfg = json.loads(args.config)
    except json.JSONDecodeError as e:
        raise SystemExit(f"refimpl bench {args.target}: --config is not JSON ({e})")
    if not isinstance(cfg, dict):
        raise SystemExit(f"refimpl bench {args.target}: --config must be a JSON object")
    mod = importlib.import_module(f"refimpl.bench.{JOBS[args.target]}")  # lazy: keeps `refimpl --help` instant
    doc = mod.run(cfg)
    write_json(args.json or cfg.get("json"), doc)
    print(json.dumps(doc, indent=1))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.target in JOBS:
        return run_job(args)
    if args.target == "peers":
        peers = importlib.import_module("refimpl.bench.peers")  # lazy: keeps `refimpl --help` instant
        return peers.main(args.peer)
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
    b.add_argument("target", choices=BENCHES + tuple(JOBS) + ("peers",),
                   help="a benchmark; bootstrap / bootstrap-pair: one run from --config; peers: create or find "
                        "the peer libraries' venvs")
    b.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    add_json(b)
    b.add_argument("--threads", default="both", choices=("1", "default", "both"), help="numba threads of the runs")
    b.add_argument("--no-peers", action="store_true",
                   help="refimpl alone: create and run no peer library venv (ckks: OpenFHE, SEAL, ...)")
    b.add_argument("--model", default=None, help="aby3-tls: tiny or a shipped model name (default: tiny)")
    b.add_argument("--config", default=None, help="bootstrap, bootstrap-pair: the run's settings as a JSON object")
    b.add_argument("--peer", action="append", default=[], help="peers: a peer's name (repeatable; default: all)")
    b.set_defaults(func=run)
