"""The user guide: every `refimpl ...` command the README and the guides show exists in the argparse
tree and accepts the flags shown; README, docs, spec and code hold no paths of one machine, no
paths above the repository and no issue numbers."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from unittest import mock

import pytest

from refimpl.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent

# the pages whose commands are checked (the README and the guides written with it)
COMMAND_PAGES = ["README.md"] + [f"docs/{p}.md" for p in (
    "ckks", "bootstrapping", "nexus-blocks", "nexus-bert", "aby3", "bert-training", "accuracy",
    "traceability", "notebook")]


# ---------------------------------------------------------------- commands shown in the docs

def shown_commands(text: str) -> list[str]:
    """`refimpl ...` in inline code spans, and lines of fenced code blocks that run `refimpl`."""
    out = []
    fenced = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    for block in fenced:
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.strip()
                m = re.match(r"^(?:\.venv/bin/)?refimpl(\s.*)?$", part)
                if m:
                    out.append("refimpl" + (m.group(1) or ""))
    body = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.S | re.M)
    out += [m.group(0) for m in re.finditer(r"(?<=`)refimpl(?: [^`]*)?(?=`)", body)]
    return out


def words(command: str) -> list[str]:
    """The shown line as argv, placeholders filled: $VAR -> a path, [--x] -> --x, a|b -> a."""
    command = command.replace("$GLUE_DIR", "glue").replace("$REFIMPL_GLUE_DIR", "glue")
    command = re.sub(r"\s#\s.*$", "", command)  # a trailing shell comment
    argv = []
    for w in shlex.split(command)[1:]:
        w = w.strip("[]")
        if w in ("", "...", "-h", "--help") or w.startswith("..."):  # --help: every parser takes it
            continue
        if "|" in w and not w.startswith("-"):
            w = w.split("|")[0]
        argv.append(w)
    return argv


class Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


class Refused(Exception):
    pass


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def resolve(argv: list[str]) -> tuple[list[str], argparse.ArgumentParser, list[str]]:
    """Walk the subcommand path: (path, the leaf parser, the rest of the line)."""
    parser, path, rest = build_parser(), [], list(argv)
    while rest and not rest[0].startswith("-"):
        subs = subparsers(parser)
        if not subs:
            break
        assert rest[0] in subs, f"`refimpl {' '.join(path + rest[:1])}`: no such subcommand (have {sorted(subs)})"
        path.append(rest.pop(0))
        parser = subs[path[-1]]
        if hasattr(parser, "table") and not parser.loaded:  # a reproduce table adds its options when first used
            parser.parse_known_args(["--help-is-not-asked"])
    return path, parser, rest


PLACEHOLDER = re.compile(r"invalid (?:choice|\w+ value): '([A-Z][A-Z0-9_]*)'")


def check_flags(parser: argparse.ArgumentParser, rest: list[str]) -> list[str]:
    """Parse the rest of the line; a missing required option is fine (the line may show a part),
    an unknown flag or a refused value is not; a value in capitals (NAME, FILE, S) is a
    placeholder and stands for any accepted value. Returns the unknown tokens."""
    def refuse(message):
        raise Refused(message)

    rest = list(rest)
    for _ in range(len(rest) + 1):
        with mock.patch.object(parser, "error", refuse):
            try:
                return parser.parse_known_args(rest)[1]
            except Refused as e:
                message = str(e)
        if "the following arguments are required" in message:
            return [w for w in rest if w.startswith("--") and w.split("=")[0] not in parser._option_string_actions]
        m = PLACEHOLDER.search(message)
        if not m:
            raise AssertionError(message)
        flag = message.split(":")[0].replace("argument ", "").split("/")[-1]
        action = parser._option_string_actions.get(flag)
        value = str(action.choices[0]) if action is not None and action.choices else "1"
        rest[rest.index(m.group(1))] = value
    raise AssertionError(f"placeholders left in {rest}")


def all_commands() -> list[tuple[str, str]]:
    out = []
    for page in COMMAND_PAGES:
        path = ROOT / page
        if path.exists():
            out += [(page, c) for c in shown_commands(path.read_text(encoding="utf-8"))]
    return out


def test_the_readme_shows_commands_and_the_extractor_finds_them():
    readme = [c for p, c in all_commands() if p == "README.md"]
    assert "refimpl demo" in readme
    assert any(c.startswith("refimpl aby3 party --id 0") for c in readme)
    assert any(c.startswith("refimpl nexus serve") for c in readme)
    assert len({c.split()[1] for c in readme if len(c.split()) > 1}) >= 10


@pytest.mark.parametrize("page,command", all_commands(), ids=lambda x: x if "/" in x or x.endswith(".md") else x[:70])
def test_every_shown_command_exists_and_takes_its_flags(page, command):
    argv = words(command)
    path, parser, rest = resolve(argv)
    unknown = check_flags(parser, rest)
    assert unknown == [], f"{page}: `{command}`: `refimpl {' '.join(path)}` does not take {unknown}"


def test_the_command_check_can_fail():
    with pytest.raises(AssertionError, match="no such subcommand"):
        resolve(words("refimpl nexus launch --port 1"))
    path, parser, rest = resolve(words("refimpl nexus query --port 1 --sentence x --no-such-flag"))
    assert path == ["nexus", "query"] and check_flags(parser, rest) == ["--no-such-flag"]
    path, parser, rest = resolve(words("refimpl reproduce accuracy --table"))
    assert path == ["reproduce", "accuracy"] and check_flags(parser, rest) == []
    path, parser, rest = resolve(words("refimpl reproduce accuracy --tabel-of-nothing"))
    assert check_flags(parser, rest) == ["--tabel-of-nothing"]
    with pytest.raises(AssertionError, match="no such subcommand"):
        resolve(words("refimpl reproduce no-such-table"))
    with pytest.raises(AssertionError, match="invalid choice"):
        check_flags(*resolve(words("refimpl aby3 party --id 7 --peers a,b,c"))[1:])


# ---------------------------------------------------------------- hygiene of docs, spec and code

# Built from pieces so that this file does not match itself.
MACHINE_PATH = re.compile("(?<![\\w.~-])/" + "(?:" + "|".join(["work", "root", "tmp"]) + ")/")
ABOVE_REPO = re.compile(re.escape(".." + "/" + "shared"))
ISSUE_WORD = re.compile("\\b" + "issue" + "s?\\s+#?\\d+", re.I)
HASH_NUMBER = re.compile("(?<![\\w&#/])" + "#" + "(\\d+)\\b")
COMMIT = re.compile("\\bcommit\\s+[0-9a-f]{7,40}\\b", re.I)
DEV_NOTES = re.compile("\\b(?:" + "DESIGN" + "|" + "STYLE" + ")\\.md\\b")


def findings(path: Path, notes: bool = False) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        hits = [m.group(0) for rx in (MACHINE_PATH, ABOVE_REPO, ISSUE_WORD, COMMIT) for m in rx.finditer(line)]
        for m in HASH_NUMBER.finditer(line):
            before = line[max(0, m.start() - 1):m.start()]
            if before in "\"'" and before and len(m.group(1)) in (3, 6):  # a colour such as "#000000"
                continue
            hits.append(m.group(0))
        if notes:
            hits += DEV_NOTES.findall(line)
        out += [f"{path.relative_to(ROOT)}:{no}: {h}" for h in hits]
    return out


def doc_files() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def test_the_hygiene_patterns_find_what_they_should():
    bad = ["see " + "/" + "work/main/x", "../" + "shared/anchors", "target of " + "#" + "7", "Issue " + "10",
           "at commit " + "87bf6ea", "DESIGN" + ".md"]
    good = ["color='" + "#" + "1f77b4'", "x = y  # 1 of 2", "tempfile.mkdtemp()", "refimpl/models/a", "&" + "#" + "160;"]
    for text in bad:
        assert any(rx.search(text) for rx in (MACHINE_PATH, ABOVE_REPO, ISSUE_WORD, HASH_NUMBER, COMMIT, DEV_NOTES)), text
    for text in good:
        assert not any(rx.search(text) for rx in (MACHINE_PATH, ABOVE_REPO, ISSUE_WORD, HASH_NUMBER, COMMIT)), text


def test_readme_and_docs_hold_no_machine_paths_and_no_issue_numbers():
    assert (ROOT / "docs").is_dir()
    assert [f for p in doc_files() for f in findings(p, notes=True)] == []


def test_spec_holds_no_machine_paths_and_no_issue_numbers():
    files = sorted((ROOT / "spec").glob("*.md"))
    assert files
    assert [f for p in files for f in findings(p)] == []


def test_code_holds_no_machine_paths_and_no_issue_numbers():
    files = sorted((ROOT / "refimpl").rglob("*.py"))
    assert files
    assert [f for p in files for f in findings(p)] == []


def test_results_and_shipped_models_hold_no_machine_paths():
    """Recorded commands name data by placeholder ($REFIMPL_GLUE_DIR, TMP/), never one machine's paths."""
    files = [p for d in ("results", "refimpl/models") for p in sorted((ROOT / d).rglob("*")) if p.is_file()
             and p.suffix in {".json", ".jsonl", ".log", ".txt", ".md", ".tsv"}]
    assert files
    hits = []
    for p in files:
        for no, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            hits += [f"{p.relative_to(ROOT)}:{no}: {m.group(0)}" for rx in (MACHINE_PATH, ABOVE_REPO)
                     for m in rx.finditer(line)]
    assert hits == []


def test_bert_training_page_names_every_bert_module():
    """docs/bert-training.md's module list names each module of refimpl/bert/."""
    page = (ROOT / "docs" / "bert-training.md").read_text(encoding="utf-8")
    modules = [p.name for p in sorted((ROOT / "refimpl" / "bert").glob("*.py")) if p.name != "__init__.py"]
    assert "model.py" in modules
    assert [m for m in modules if f"`{m}`" not in page] == []
