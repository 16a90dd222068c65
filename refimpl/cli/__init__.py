"""The `refimpl` command: one argparse tree.

Each command group is a module of this package with ``register(subparsers)``; every subcommand
calls one function ``f(args) -> int``. Group modules import only argparse at their top and the
library inside their functions, so that ``refimpl --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from refimpl import __version__
from refimpl.cli import aby3, bench, bert, demo, experiments, nexus, spec

GROUPS = [demo, bench, bert, nexus, spec, experiments, aby3]

# Subcommands not yet moved into a group module: `refimpl NAME ARGS...` calls MODULE.FUNC(ARGS),
# which parses its own arguments. Each entry leaves when its group module registers it.
FORWARDED = {
    "reproduce": ("refimpl.reproduce", "main", "regenerate a table of the papers: accuracy, speed, agreement, nexus"),
}


def _forward(args: argparse.Namespace) -> int:
    module, func, _ = FORWARDED[args.command]
    return getattr(importlib.import_module(module), func)(args.argv) or 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refimpl", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--version", action="version", version=f"refimpl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
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
    args.argv = argv  # the command line as typed, for the provenance a command records
    return args.func(args)
