"""The `refimpl` command (DESIGN.md section 2).

Subcommands dispatch lazily to their modules so that `refimpl --help` stays instant and a
part that is not built yet says so instead of failing at import.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHES = ("ckks", "aby3", "nexus", "bert")

# Subcommands owned by one module each: `refimpl NAME ARGS...` calls MODULE.FUNC(ARGS) and the
# module parses its own arguments (so each part documents its own options in one place).
FORWARDED = {
    "train": ("refimpl.bert.train", "main", "fine-tune a BERT classifier on a GLUE task"),
    "distill": ("refimpl.bert.distill", "main", "two-stage distillation into an MPC-friendly student"),
    "fit-freediv": ("refimpl.bert.freediv", "main", "fit the public attention denominator f(n) = a n^b"),
    "eval": ("refimpl.bert.train", "eval_main", "evaluate a checkpoint on a GLUE dev set"),
    "ship": ("refimpl.cli", "ship", "build the shipped small models and their NEXUS ranges"),
    "reproduce": ("refimpl.reproduce", "main", "regenerate a table of the papers: accuracy, speed, agreement, nexus"),
    "nexus": ("refimpl.nexus.protocol", "main", "NEXUS client and server as two processes: serve, query"),
    "aby3": ("refimpl.aby3.tcp", "main", "ABY3 parties as separate processes over TCP: party"),
    "spec": ("refimpl.spec", "main", "every spec ID with its paper reference, code and tests"),
}


def ship(argv: list[str]) -> int:
    """refimpl ship: the shipped models (refimpl.bert.shipped), then the model owner's NEXUS ranges of
    each (`refimpl nexus calibrate` on the GLUE SST-2 training set). Here, because bert imports no nexus."""
    from pathlib import Path

    from refimpl.bert import shipped
    from refimpl.nexus import protocol

    rc = shipped.main(argv)
    if rc:
        return rc
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--out", default=str(shipped.MODELS_DIR))
    a, _ = p.parse_known_args(argv)
    tsv = str(Path(a.glue_dir) / "SST-2" / "train.tsv")
    for name in shipped.NAMES:
        rc = protocol.main(["calibrate", "--model", str(Path(a.out) / name), "--calibrate-tsv", tsv])
        if rc:
            return rc
    return 0


def _bench(args: argparse.Namespace) -> int:
    try:
        mod = importlib.import_module(f"refimpl.bench.{args.target}")
    except ModuleNotFoundError as e:
        if e.name == f"refimpl.bench.{args.target}":
            print(f"refimpl bench {args.target}: not built yet", file=sys.stderr)
            return 2
        raise
    return mod.main(quick=args.quick, json_path=args.json, threads=args.threads) or 0


def run_module(module: str, func: str, argv: list[str], what: str) -> int:
    """Call module.func(argv); a module that does not exist yet says so (exit code 2)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            print(f"refimpl {what}: not built yet", file=sys.stderr)
            return 2
        raise
    return getattr(mod, func)(argv) or 0


def _forward(args: argparse.Namespace) -> int:
    module, func, _ = FORWARDED[args.command]
    return run_module(module, func, args.argv, args.command)


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
    for name, (_, _, help_) in FORWARDED.items():
        f = sub.add_parser(name, help=help_, add_help=False)
        f.add_argument("argv", nargs=argparse.REMAINDER)
        f.set_defaults(func=_forward)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in FORWARDED:  # the module parses its own options (argparse's REMAINDER would not)
        return _forward(argparse.Namespace(command=argv[0], argv=argv[1:]))
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
