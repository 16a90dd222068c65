"""The `refimpl` command: one argparse tree.

Each command group is a module of this package with ``register(subparsers)``; every subcommand
calls one function ``f(args) -> int``. Group modules import only argparse at their top and the
library inside their functions, so that ``refimpl --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from refimpl import __version__
from refimpl.cli import aby3, bench, bert, demo, experiments, nexus, plot, reproduce, spec
from refimpl.cli.common import Parser

GROUPS = [demo, bench, bert, nexus, aby3, reproduce, experiments, spec, plot]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="refimpl", description=__doc__.splitlines()[0])  # every subcommand's help shows its defaults
    p.add_argument("--version", action="version", version=f"refimpl {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines on stderr (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only on stderr, no progress bars")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Logs and progress to stderr, results to stdout: WARNING by default, INFO with -v, DEBUG with -vv, ERROR with -q."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s", force=True)
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it: no progress bars with -q


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as typed, for the provenance a command records
    setup_logging(args.verbose, args.quiet)
    return args.func(args)
