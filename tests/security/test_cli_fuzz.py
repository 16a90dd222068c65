"""NEXUS-SEC-CLI: every malformed command-line input of tests/security/cli_fuzz.py ends in one clear
line and a non-zero exit code (no traceback, hang or silent success); without the central
handling of refimpl.cli.main (refimpl.cli.run, the weakened configuration) the same inputs
end in tracebacks, so the judge can fail."""

import contextlib
import io

import pytest

from refimpl.cli import run
from . import cli_fuzz
from .cli_fuzz import CASES, Case, run_case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_ends_in_one_clear_line(case, tmp_path):
    r = run_case(case, tmp_path)
    assert r["outcome"] == "clean", r
    assert r["code"] != 0 and r["message"]
    assert r["message"].startswith("refimpl")  # `refimpl: ...` or argparse's `refimpl CMD: error: ...`


WEAK = ["nexus calibrate: empty TSV", "nexus serve: port in use", "nexus query: stuck server, --timeout 1", "demo: empty sentence"]


@pytest.mark.parametrize("name", WEAK)
def test_without_central_handling_the_same_inputs_raise(name, tmp_path, monkeypatch):
    """The weakened configuration: main without its handler; the judge then sees a traceback."""
    case = next(c for c in CASES if c.name == name)
    monkeypatch.setattr(cli_fuzz, "main", run)
    r = run_case(Case(case.name, case.argv), tmp_path)
    assert r["outcome"] == "traceback", r


def test_judge_sees_silent_success(tmp_path):
    """A command that succeeds on its input is judged `silent` (the fuzz's cases must all fail)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        r = run_case(Case("reproduce --help", lambda t: ["reproduce", "--help"]), tmp_path)
    assert r["outcome"] == "silent"
