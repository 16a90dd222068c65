"""`refimpl plot`: PNG files from the committed results (skipped without matplotlib, the plot extra),
and the readers behind them (which need no matplotlib)."""

import json
from pathlib import Path

import pytest

from refimpl.cli import main
from refimpl.constants import C
from refimpl.reproduce import accuracy_table, plots, plots_placement

RESULTS = Path(__file__).resolve().parents[1] / "results"
PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_every_png_from_the_committed_results(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["plot", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(plots.PLOTS)
    assert all((tmp_path / p).read_bytes()[:8] == PNG for p in plots.PLOTS)
    assert capsys.readouterr().out.split() == [str(tmp_path / p) for p in plots.PLOTS]
    made = plots.make_all(out_dir=tmp_path / "one", names=["nexus_placement_small.png"])
    assert [p.name for p in made] == ["nexus_placement_small.png"] and made[0].read_bytes()[:8] == PNG


def test_plot_fails_in_one_line_naming_the_missing_file_and_its_command(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(SystemExit, match=r"needs .*precision_levels_2\^13\.json.*refimpl experiment precision-levels"):
        main(["plot", "ckks_precision_levels.png", "--results", str(tmp_path), "--out", str(tmp_path)])
    (tmp_path / "accuracy").mkdir()
    with pytest.raises(SystemExit, match=r"needs .*accuracy.*refimpl reproduce accuracy") as e:
        main(["plot", "accuracy_vs_papers.png", "--results", str(tmp_path), "--out", str(tmp_path)])
    assert "\n" not in str(e.value.code)
    with pytest.raises(SystemExit, match="unknown plot nope.png"):
        main(["plot", "nope.png", "--out", str(tmp_path)])
    assert not list(tmp_path.glob("*.png"))


def test_every_plot_names_files_the_index_knows():
    index = (RESULTS / "INDEX.md").read_text()
    for name, (_fn, rels) in plots.PLOTS.items():
        for rel in rels:
            assert f"`{rel}`" in index, (name, rel)


@pytest.mark.parametrize("model", list(plots_placement.SMALL_MODELS))
def test_stored_plan_table_reads_back_to_its_totals(model):
    plan = plots_placement.stored_plan(RESULTS / "nexus" / f"nexus_bert_plan_{model}.json")
    rows = plan["rows"]
    assert rows[0]["block"] == "L0.qkv" and rows[-1]["block"] == "head"
    assert sum(r["cost"] for r in rows) == plan["levels_used"]
    assert sum(r["bootstrap"] for r in rows) == plan["bootstrap_points"]
    assert all(r["level_in"] == plan["bootstrap_level"] for r in rows if r["bootstrap"])
    assert all(r["level_in"] - r["cost"] == r["level_out"] for r in rows)


def test_accuracy_points_are_the_tables_cells_beside_the_constants():
    points = {p["row"]: p for p in plots.accuracy_points(RESULTS / "accuracy")}
    assert set(points) == set(accuracy_table.ROWS) - accuracy_table.ABLATIONS
    rec = accuracy_table.read(RESULTS / "accuracy")
    student = points["2quad-freediv-quad"]
    assert student["distilled"] == rec.cells[("2quad-freediv-quad", "distilled")]
    assert student["paper distilled"]["SST-2"] == C["freediv"]["sst2_accuracy"]
    assert student["paper direct"] == {}
    teacher = json.loads((RESULTS / "accuracy" / "teacher_SST-2.json").read_text())
    assert points["teacher"]["distilled"]["SST-2"] == [100 * teacher["value"]]
    assert points["2relu-relu"]["paper_row"] == "2ReLU+Quad"
    assert max(max(v) for v in student["best"].values()) >= max(max(v) for v in student["distilled"].values())
