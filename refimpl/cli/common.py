"""The conventions every `refimpl` command follows (ours): one spelling per option, one GLUE lookup, --yes.

- `--json FILE`: machine-readable output, in every command that writes results (`--out` only where the
  output is a directory or an artifact such as a model's ranges file);
- GLUE: `--glue-dir`, then the environment variable REFIMPL_GLUE_DIR, then one clear error line
  that says where GLUE comes from (no default path outside the repository);
- a run that takes hours or tens of GB warns first and needs `--yes` (or a "y" on a terminal);
- results paths: anchored to the repository (`repo_path`) or given by flags, never relative to
  the working directory.
This module imports only the standard library (`refimpl --help` stays instant).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

GLUE_ENV = "REFIMPL_GLUE_DIR"
GLUE_HELP = f"GLUE directory holding <TASK>/{{train,dev}}.tsv (default: ${GLUE_ENV})"
REPO = Path(__file__).resolve().parent.parent.parent  # the checkout: refimpl/cli/common.py -> root


def repo_path(*parts: str) -> Path:
    """A path under the repository root, whatever the working directory."""
    return REPO.joinpath(*parts)


def add_json(parser: argparse.ArgumentParser, default: str | None = None,
             help: str = "also write the results as one JSON document to this file") -> None:
    """`--json FILE` (dest `json`): the one spelling of a command's machine-readable output."""
    parser.add_argument("--json", metavar="FILE", default=default, help=help)


def write_json(path: str | None, doc) -> None:
    """Write `doc` as one JSON document to `path` (the value of --json; None: nothing)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")


def add_glue_dir(parser: argparse.ArgumentParser) -> None:
    """`--glue-dir DIR`, resolved by `glue_dir` (flag, then $REFIMPL_GLUE_DIR)."""
    parser.add_argument("--glue-dir", default=None, metavar="DIR", help=GLUE_HELP)


def glue_dir(args: argparse.Namespace) -> str:
    """The GLUE directory: --glue-dir, else $REFIMPL_GLUE_DIR, else a one-line error (SystemExit, no traceback)."""
    value = getattr(args, "glue_dir", None) or os.environ.get(GLUE_ENV)
    if not value:
        raise SystemExit("refimpl: error: this command needs the GLUE data: give --glue-dir DIR or set "
                         f"{GLUE_ENV}=DIR, DIR holding SST-2/, RTE/, STS-B/ "
                         "(get it from https://gluebenchmark.com/tasks)")
    path = Path(value)
    if not path.is_dir():
        raise SystemExit(f"refimpl: error: GLUE directory {value} does not exist "
                         f"(from {'--glue-dir' if getattr(args, 'glue_dir', None) else '$' + GLUE_ENV})")
    args.glue_dir = str(path)
    return str(path)


def recorded_argv(argv: list[str]) -> list[str]:
    """argv as a result file records it: the value of --glue-dir written $REFIMPL_GLUE_DIR (results name data
    by placeholder, never one machine's path)."""
    out, after_flag = [], False
    for a in argv:
        if after_flag:
            out.append("$" + GLUE_ENV)
        elif a.startswith("--glue-dir="):
            out.append("--glue-dir=$" + GLUE_ENV)
        else:
            out.append(a)
        after_flag = a == "--glue-dir"
    return out


def add_yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", action="store_true", help="run a job that takes hours or tens of GB without asking")


def confirm(args: argparse.Namespace, warning: str) -> bool:
    """Print the warning to stderr; True with --yes or a "y" typed on a terminal, else False with how to go on."""
    print(f"refimpl: warning: {warning}", file=sys.stderr)
    if getattr(args, "yes", False):
        return True
    if sys.stdin.isatty():
        answer = input("continue? [y/N] ").strip().lower()
        return answer in ("y", "yes")
    print("refimpl: not started: pass --yes to run it anyway", file=sys.stderr)
    return False


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, unless the help text already says what the default is."""

    def _get_help_string(self, action):  # the formatter's documented hook
        text = action.help or ""
        return text if "default" in text else super()._get_help_string(action)


class RawDefaultsFormatter(argparse.RawDescriptionHelpFormatter, DefaultsFormatter):
    """Descriptions as written, defaults shown."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows the defaults; its subparsers are Parsers too (add_subparsers
    takes the parser's own class), so one `parser_class=Parser` at the top covers the whole tree."""

    def __init__(self, *args, **kwargs):
        fmt = kwargs.get("formatter_class", argparse.HelpFormatter)
        if issubclass(fmt, argparse.RawDescriptionHelpFormatter):
            kwargs["formatter_class"] = RawDefaultsFormatter
        else:
            kwargs["formatter_class"] = DefaultsFormatter
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        """An option without help text still shows its default (the formatter skips options with no help)."""
        if args and str(args[0]).startswith("-") and "help" not in kwargs and kwargs.get("action") not in ("help", "version"):
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)
