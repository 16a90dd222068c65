"""`refimpl spec`: the table parser, reference resolution and the counting rule on a
small synthetic spec, and the real spec/ with no untested ID (static mode)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl import spec
from refimpl.cli import main

HEADER = "| ID | requirement | source | code | tests |\n|---|---|---|---|---|\n"

TESTS = '''
from refimpl.aby3 import arith


def check_mul(x):
    assert arith.mul is not None and x == 1


def test_good():
    """Also names SYN-RAISES, whose row does not cite it: reported, not counted."""
    assert arith.mul is not None


def test_second():
    """Counts through a same-file helper that asserts."""
    check_mul(1)


def test_no_assert():
    """SYN-NOASSERT: carries the tag and calls the code but checks nothing."""
    arith.mul


def test_wrong_code():
    """SYN-WRONG: names arith.mul and mul in its docstring only, and asserts something else."""
    assert 1 + 1 == 2


def test_runs_script():
    import subprocess
    out = subprocess.run(["python", "refimpl/aby3/arith.py", "--help"], capture_output=True)
    assert out is not None


def test_raises():
    import pytest
    with pytest.raises(AttributeError):
        arith.no_such_function
'''


def make(tmp_path: Path, rows: str, tests: str = TESTS) -> tuple[Path, Path]:
    """A spec dir with aby3.md (so code resolves in refimpl/aby3) and a tests dir."""
    spec_dir, tests_dir = tmp_path / "spec", tmp_path / "tests"
    (tests_dir / "aby3").mkdir(parents=True)
    spec_dir.mkdir()
    (tests_dir / "aby3" / "test_syn.py").write_text(textwrap.dedent(tests))
    (spec_dir / "aby3.md").write_text("# Synthetic\n\n## Section (§1)\n\n" + HEADER + textwrap.dedent(rows))
    return spec_dir, tests_dir


def by_id(rows):
    return {r.id: r for r in rows}


def test_resolution_and_counting_rule(tmp_path):
    """Code tokens resolve to real symbols; tests count only with an assertion that reaches the code."""
    spec_dir, tests_dir = make(tmp_path, """\
        | SYN-OK | mul | ABY3 §5 | `arith.mul` | `test_syn.py::test_good`, `::test_second` |
        | SYN-SAME | mul again | same | `arith.mul` | same |
        | SYN-NOASSERT | | | `arith.mul` | `test_syn.py::test_no_assert` |
        | SYN-WRONG | | | `arith.mul` | `test_no_assert`, `test_wrong_code` |
        | SYN-FILE | every test of a file | | `arith` | `test_syn.py` |
        | SYN-RAISES | | | `arith` | `test_raises` |
        | SYN-SCRIPT | | | `refimpl/aby3/arith.py` | `test_runs_script` |
        """)
    rows = by_id(spec.check(spec_dir, tests_dir))
    ok = rows["SYN-OK"]
    assert ok.reference == "ABY3 §5"
    assert [c.module.__name__ for c in ok.code] == ["refimpl.aby3.arith"] and ok.code[0].attrs == ["mul"]
    assert [t.funcs[0].name for t in ok.tests] == ["test_good", "test_second"]
    assert all(t.counts for t in ok.tests) and ok.tested and not ok.errors
    assert rows["SYN-SAME"].reference == "ABY3 §5" and len(rows["SYN-SAME"].counting) == 2
    assert not rows["SYN-NOASSERT"].tested
    assert rows["SYN-NOASSERT"].tests[0].why_not == "no assertion in the test body"
    wrong = rows["SYN-WRONG"]
    assert not wrong.tested and wrong.tests[1].why_not == "does not name the row's code"
    # a file reference counts through the tests of the file that assert and reach the code
    f = rows["SYN-FILE"].tests[0]
    assert {x.name for x in f.counting} == {"test_good", "test_second", "test_raises", "test_runs_script"}
    assert rows["SYN-RAISES"].tested   # pytest.raises is an assertion
    assert [n.split("::")[-1] for n in rows["SYN-RAISES"].tagged_not_cited] == ["test_good"]
    assert rows["SYN-NOASSERT"].tagged and not rows["SYN-NOASSERT"].tagged_not_cited
    script = rows["SYN-SCRIPT"].tests[0]  # a file named in a string reaches it; spawning is recorded
    assert script.counts and script.funcs[0].subprocess and not ok.tests[0].funcs[0].subprocess
    s = spec.summary(list(rows.values()))
    assert s["ids"] == 7 and s["tested"] == 5
    assert s["untested"] == ["SYN-NOASSERT", "SYN-WRONG"] and not s["ok"]


def test_unresolved_references_are_errors(tmp_path):
    """A missing symbol, module, file or test is reported and fails the check."""
    spec_dir, tests_dir = make(tmp_path, """\
        | SYN-A | | | `arith.no_such_function` | `test_good` |
        | SYN-B | | | `no_such_module.f` | `test_syn.py::test_missing` |
        | SYN-C | | | `arith.mul` | `test_nowhere.py`, `::test_good` |
        | SYN-D | | | | `test_good` |
        """)
    rows = by_id(spec.check(spec_dir, tests_dir))
    assert "has no attribute no_such_function" in rows["SYN-A"].errors[0]
    assert not rows["SYN-A"].tested          # the test cannot reach code that does not exist
    assert "no module or top-level definition named no_such_module" in rows["SYN-B"].errors[0]
    assert "has no test test_missing" in rows["SYN-B"].errors[1]
    assert "no test file test_nowhere.py" in rows["SYN-C"].errors[0]
    assert "continues no file" in rows["SYN-C"].errors[1]
    assert rows["SYN-D"].errors == ["no code reference"]
    assert spec.summary(list(rows.values()))["unresolved"]


def test_main_exit_status_and_json(tmp_path, capsys):
    """Exit 0 when every ID has a counting test; 1 with an untested ID; --json writes the rows."""
    good = "| SYN-OK | | | `arith.mul` | `test_good` |\n"
    spec_dir, tests_dir = make(tmp_path / "a", good)
    out = tmp_path / "spec.json"
    assert main(["spec", "--spec-dir", str(spec_dir), "--tests-dir", str(tests_dir), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["ok"] and doc["rows"][0]["tests"][0]["counts"]
    assert "IDs: 1, tested: 1, untested: 0" in capsys.readouterr().out
    spec_dir, tests_dir = make(tmp_path / "b", good + "| SYN-BAD | | | `arith.mul` | `test_no_assert` |\n")
    assert main(["spec", "--spec-dir", str(spec_dir), "--tests-dir", str(tests_dir)]) == 1
    assert "untested: SYN-BAD" in capsys.readouterr().out


def test_duplicate_ids_and_short_rows_are_refused(tmp_path):
    spec_dir, tests_dir = make(tmp_path, "| SYN-X | | | `arith` | `test_good` |\n| SYN-X | | | `arith` | `test_good` |\n")
    with pytest.raises(spec.SpecError, match="duplicate spec ID SYN-X"):
        spec.check(spec_dir, tests_dir)
    (spec_dir / "aby3.md").write_text(HEADER + "| SYN-Y | only two |\n")
    with pytest.raises(spec.SpecError, match="row has 2 cells"):
        spec.check(spec_dir, tests_dir)


def test_code_forms_resolve():
    """Paths, path::symbol, Class.a/b alternatives, globs, call arguments, continuation, directories."""
    refs = spec.resolve_code(
        "`ring/rns.py::RNSContext.mod_down`, `Bootstrapper.coeffs_to_slots/slots_to_coeffs`, "
        "`matmul.alg6_*`, `add_key_layer`, `folding.quick_sum(duplicate=True)`, `refimpl/bert`", "nexus")
    assert [r.error for r in refs] == [None] * 6
    assert refs[0].attrs == ["RNSContext.mod_down"]
    assert refs[1].module.__name__.startswith("refimpl.ckks.bootstrap")
    assert refs[1].attrs == ["Bootstrapper.coeffs_to_slots", "Bootstrapper.slots_to_coeffs"]
    assert len(refs[2].attrs) >= 2 and all(a.startswith("alg6_") for a in refs[2].attrs)
    assert refs[3].module is refs[2].module and refs[3].attrs == ["add_key_layer"]
    assert refs[4].attrs == ["quick_sum"]
    assert refs[5].path.is_dir() and "forward" in refs[5].names()
    # the dynamic check: a function of the cited code, by file and qualified name
    from refimpl.ring import rns
    assert refs[0].matches(rns.__file__, "RNSContext.mod_down")
    assert not refs[0].matches(rns.__file__, "RNSContext.ntt")


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="|`\\\n\r"), max_size=12)
                .map(str.strip), min_size=1, max_size=6))
def test_split_cells_inverts_joining(cells):
    """Law: splitting a table line gives back the cells it was joined from."""
    assert spec.split_cells("| " + " | ".join(cells) + " |") == cells


def test_split_cells_keeps_pipes_in_code_and_escapes():
    assert spec.split_cells("| a | `x | y` | b \\| c |") == ["a", "`x | y`", "b | c"]


def test_real_spec_has_no_untested_id():
    """The real spec/ passes the static check: every ID has a counting test, every reference resolves."""
    rows = spec.check()
    s = spec.summary(rows)
    assert s["ids"] >= 100
    assert s["unresolved"] == [], s["unresolved"]
    assert s["untested"] == [], s["untested"]


def test_cli_module_runs(tmp_path):
    """`python -m refimpl spec` prints the tables and the summary."""
    r = subprocess.run([sys.executable, "-m", "refimpl", "spec", "--json", str(tmp_path / "s.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "spec/nexus.md" in r.stdout and "untested: 0" in r.stdout
    assert json.loads((tmp_path / "s.json").read_text())["summary"]["ok"]


def test_no_spec_tables_is_an_error(tmp_path, capsys):
    """Run outside a checkout (no spec/*.md), `refimpl spec` says so and exits 1, never 0 with 0 IDs."""
    assert main(["spec", "--repo", str(tmp_path)]) == 1
    assert "no spec tables" in capsys.readouterr().err
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "x.md").write_text("# nothing here\n")
    assert main(["spec", "--repo", str(tmp_path)]) == 1
    assert "no spec IDs" in capsys.readouterr().err
