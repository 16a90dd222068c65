"""The `refimpl` command: one argparse tree.

Each command group is a module of this package with ``register(subparsers)``; every subcommand
calls one function ``f(args) -> int``. Group modules import only argparse at their top and the
library inside their functions, so that ``refimpl --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from refimpl import __version__
from refimpl.cli import aby3, bench, bert, demo, experiments, nexus, reproduce, spec

GROUPS = [demo, bench, bert, nexus, aby3, reproduce, experiments, spec]

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refimpl", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--version", action="version", version=f"refimpl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as typed, for the provenance a command records
    return args.func(args)
