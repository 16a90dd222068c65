"""The command-line conventions (refimpl.cli.common): --json, GLUE lookup, --yes, defaults in help, -v/-q, --no-peers."""

import json
import logging
import sys

import pytest

from refimpl.cli import build_parser, main
from refimpl.cli.common import GLUE_ENV, repo_path


def help_of(*command: str) -> str:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*command, "--help"])
    assert e.value.code == 0
    return " ".join(HELP.pop().split())  # unwrapped


HELP: list = []


@pytest.fixture(autouse=True)
def capture_help(monkeypatch):
    import argparse

    monkeypatch.setattr(argparse.ArgumentParser, "print_help", lambda self, file=None: HELP.append(self.format_help()))


def test_json_is_the_one_spelling_and_old_ones_are_hidden_aliases():
    p = build_parser()
    a = p.parse_args(["train", "--result", "r.json"])
    b = p.parse_args(["train", "--json", "r.json"])
    assert a.json == b.json == "r.json"
    assert p.parse_args(["fit-freediv", "--out", "f.json"]).json == "f.json"
    text = help_of("train")
    assert "--result" not in text and "--json" in text


def test_help_shows_defaults_everywhere():
    assert "(default: 32)" in help_of("train")  # --batch-size, which has no help text of its own
    assert "(default: both)" in help_of("bench")
    assert "(default: 128-2^16-dense)" in help_of("nexus", "serve")


def test_glue_lookup_flag_then_environment_then_one_line_error(monkeypatch, tmp_path):
    monkeypatch.delenv(GLUE_ENV, raising=False)
    with pytest.raises(SystemExit, match=f"give --glue-dir DIR or set {GLUE_ENV}=DIR.*gluebenchmark.com"):
        main(["fit-freediv"])
    monkeypatch.setenv(GLUE_ENV, str(tmp_path / "absent"))
    with pytest.raises(SystemExit, match=f"does not exist \\(from \\${GLUE_ENV}\\)"):
        main(["fit-freediv"])
    with pytest.raises(SystemExit, match="does not exist \\(from --glue-dir\\)"):
        main(["fit-freediv", "--glue-dir", str(tmp_path / "also-absent")])


def test_a_heavy_nexus_run_needs_yes(monkeypatch, capsys):
    """`refimpl nexus serve` with the default BERT at N = 2^16: a warning, and without --yes off a terminal it
    does not start (--insecure-no-tls only gets past the TLS requirement, which bare `nexus serve` meets first)."""
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # noqa: SIM115 - not a terminal
    assert main(["nexus", "serve", "--insecure-no-tls"]) == 1
    err = capsys.readouterr().err
    assert "10 GB" in err and "pass --yes" in err


def test_bench_no_peers_reaches_the_ckks_bench(monkeypatch):
    from refimpl.bench import ckks

    seen = {}
    monkeypatch.setattr(ckks, "main", lambda **kw: seen.update(kw) or 0)
    assert main(["bench", "ckks", "--quick", "--no-peers", "--threads", "1", "--json", "x.json"]) == 0
    assert seen == {"quick": True, "json_path": "x.json", "threads": "1", "use_peers": False}


def test_verbosity_sets_the_log_level(monkeypatch):
    from refimpl.bench import ckks

    monkeypatch.setattr(ckks, "main", lambda **kw: 0)
    main(["-v", "bench", "ckks"])
    assert logging.getLogger().level == logging.INFO
    main(["-q", "bench", "ckks"])
    assert logging.getLogger().level == logging.ERROR
    main(["bench", "ckks"])
    assert logging.getLogger().level == logging.WARNING


def test_results_paths_are_anchored_to_the_repository():
    assert repo_path("results").is_dir() and (repo_path() / "pyproject.toml").is_file()
    assert json.loads((repo_path("refimpl", "models", "sst2-small-softmax-gelu", "config.json")).read_text())["model_type"] == "bert"


def test_bench_model_goes_with_aby3_tls_only():
    """`refimpl bench csprng` and `aby3-tls` are bench targets; --model belongs to aby3-tls alone."""
    p = build_parser()
    assert p.parse_args(["bench", "aby3-tls", "--model", "tiny"]).model == "tiny"
    assert p.parse_args(["bench", "csprng", "--quick"]).target == "csprng"
    with pytest.raises(SystemExit, match="--model applies to aby3-tls only"):
        main(["bench", "csprng", "--model", "tiny"])
