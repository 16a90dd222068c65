"""The command-line conventions (refimpl.cli.common): --json, GLUE lookup, --yes, defaults in help, -v/-q, --no-peers."""

import json
import logging
import sys

import pytest

from refimpl.cli import build_parser, main
from refimpl.cli.common import GLUE_ENV, recorded_argv, repo_path


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


def test_json_is_the_one_spelling():
    p = build_parser()
    assert p.parse_args(["train", "--json", "r.json"]).json == "r.json"
    assert p.parse_args(["fit-freediv", "--json", "f.json"]).json == "f.json"
    for argv in (["train", "--result", "r.json"], ["distill", "--teacher", "t", "--result", "r.json"],
                 ["fit-freediv", "--out", "f.json"]):  # the former spellings are gone
        with pytest.raises(SystemExit):
            p.parse_args(argv)
    assert "--result" not in help_of("train") and "--json" in help_of("train")


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


def test_fit_freediv_names_models_as_every_command_does(tmp_path, capsys):
    """--model takes a shipped name or a directory; the denominator follows from the attention, the label from the name."""
    from refimpl.bert import shipped

    student = shipped.NAMES[1]
    (tmp_path / "SST-2").mkdir()
    rows = ["a fine film .", "dull .", "it is a very long and rather tedious film .", "good .", "bad film ."] * 2
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{r}\t1\n" for r in rows))
    out = tmp_path / "fit.json"
    argv = ["fit-freediv", "--glue-dir", str(tmp_path), "--min-count", "1", "--json", str(out)]
    assert main([*argv, "--model", student, "--model", str(shipped.resolve(student)), "--label", "student"]) == 0
    fits = json.loads(out.read_text())["fits"]
    assert set(fits) == {"student", student} and {f["kind"] for f in fits.values()} == {"2quad"}
    assert main([*argv, "--model", student, "--kind", "softmax"]) == 0
    assert json.loads(out.read_text())["fits"][student]["kind"] == "softmax"
    capsys.readouterr()
    # the former LABEL=MODEL:KIND syntax names no model: one line, no traceback
    assert main([*argv, "--model", f"s={student}:2quad"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert main([*argv, "--model", student, "--min-count", "99"]) == 2  # too few lengths: a user error
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--min-count" in err


def test_fit_freediv_kind_comes_from_the_attention():
    from refimpl.cli.bert import freediv_kind
    from refimpl.errors import UserError

    assert freediv_kind("softmax") == "softmax" and freediv_kind("2quad-freediv") == "2quad"
    with pytest.raises(UserError, match="--kind"):
        freediv_kind("scaling")


# every subcommand that writes results offers --json FILE; these write something else (reason)
WITHOUT_JSON = {
    "nexus serve": "a server: its answers go to its clients",
    "nexus keys": "a TLS key directory (--out DIR)",
    "aby3 keys": "a TLS key directory (--out DIR)",
    "nexus precompute": "a weight store directory (--out DIR)",
    "nexus calibrate": "the model's ranges file, an input of `nexus serve` (--out FILE)",
    "ship": "the shipped model directories (--out DIR) and their accuracy records (--results DIR)",
    "plot": "PNG files (--out DIR)",
}
# --out stays only where the output is not the command's JSON document
OUT_IS_NOT_JSON = {"train": "the model directory", "distill": "the model directory", **WITHOUT_JSON}


def leaf_parsers():
    """(command words, parser) of every subcommand, the reproduce tables' options loaded."""
    import argparse

    from refimpl.cli.reproduce import TableParser

    out, todo = [], [((), build_parser())]
    while todo:
        words, p = todo.pop()
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            if isinstance(p, TableParser) and not p.loaded:
                with pytest.raises(SystemExit):
                    p.parse_known_args(["--help"])
            out.append((" ".join(words), p))
        for name, child in (subs[0].choices.items() if subs else ()):
            todo.append(((*words, name), child))
    return sorted(out, key=lambda t: t[0])


def visible_options(p) -> dict:
    import argparse

    return {s: a for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


def test_every_command_that_writes_results_offers_json_and_no_other_spelling():
    leaves = leaf_parsers()
    names = [w for w, _ in leaves]
    assert "reproduce accuracy" in names and "reproduce nexus" in names and len(names) > 30
    assert set(WITHOUT_JSON) <= set(names)  # the exemptions name real commands
    for words, p in leaves:
        opts = visible_options(p)
        if words in WITHOUT_JSON:
            assert "--json" not in opts, f"{words} has --json now: drop it from WITHOUT_JSON"
        else:
            assert "--json" in opts and opts["--json"].dest == "json", f"`refimpl {words}` has no --json FILE"
        for other in ("--out", "--output", "--result", "--json-out"):
            assert other not in opts or words in OUT_IS_NOT_JSON, f"`refimpl {words}` spells its JSON output {other}"


def test_bench_model_goes_with_aby3_tls_only():
    """`refimpl bench csprng` and `aby3-tls` are bench targets; --model belongs to aby3-tls alone."""
    p = build_parser()
    assert p.parse_args(["bench", "aby3-tls", "--model", "tiny"]).model == "tiny"
    assert p.parse_args(["bench", "csprng", "--quick"]).target == "csprng"
    with pytest.raises(SystemExit, match="--model applies to aby3-tls only"):
        main(["bench", "csprng", "--model", "tiny"])


def test_recorded_argv_writes_the_glue_dir_as_its_placeholder():
    """Result files record --glue-dir's value as $REFIMPL_GLUE_DIR, in both spellings; nothing else changes."""
    assert recorded_argv(["--glue-dir", "/data/glue", "--limit", "2"]) == ["--glue-dir", "$REFIMPL_GLUE_DIR", "--limit", "2"]
    assert recorded_argv(["--glue-dir=/data/glue", "--seed", "1"]) == ["--glue-dir=$REFIMPL_GLUE_DIR", "--seed", "1"]
    assert recorded_argv(["--limit", "2"]) == ["--limit", "2"]
