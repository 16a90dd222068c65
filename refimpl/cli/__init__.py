"""The `refimpl` command: one argparse tree.

Each command group is a module of this package with ``register(subparsers)``; every subcommand
calls one function ``f(args) -> int``. Group modules import only argparse at their top and the
library inside their functions, so that ``refimpl --help`` stays instant.

Errors (ours): a user error (refimpl.errors.UserError, which the protocols' ProtocolError and
other input checks derive from; a missing or unreadable file; an unreachable or refused
connection; a timeout) ends in one line `refimpl: <message>` on stderr and exit code 2. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from refimpl import __version__
from refimpl.cli import aby3, bench, bert, demo, experiments, nexus, plot, reproduce, spec
from refimpl.cli.common import Parser
from refimpl.errors import UserError

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


# what a user's input, files or network cause (one line, exit 2); any other exception is a bug
USER_ERRORS = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
               ConnectionError, TimeoutError, UnicodeDecodeError)
EXIT_USER_ERROR = 2


def user_error_message(e: BaseException) -> str:
    """One line for a user error: the message, with the file name an OSError carries."""
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    if isinstance(e, UnicodeDecodeError):
        return f"input is not UTF-8 text ({e.reason} at byte {e.start})"
    msg = str(e).strip().splitlines()
    return msg[0] if msg else type(e).__name__


def run(argv: list[str]) -> int:
    """Parse and run one command (exceptions propagate: main turns user errors into one line)."""
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as typed, for the provenance a command records
    setup_logging(args.verbose, args.quiet)
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return run(argv)
    except USER_ERRORS as e:
        print(f"refimpl: {user_error_message(e)}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("refimpl: interrupted", file=sys.stderr, flush=True)
        return 130
