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
import sys

from refimpl import __version__
from refimpl.cli import aby3, bench, bert, demo, experiments, nexus, reproduce, spec
from refimpl.errors import UserError

GROUPS = [demo, bench, bert, nexus, aby3, reproduce, experiments, spec]

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refimpl", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--version", action="version", version=f"refimpl {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return p


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
