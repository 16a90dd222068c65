"""`refimpl plot`: PNG files from the stored results (skipped without matplotlib, the plot extra)."""

import pytest

from refimpl.cli import main


def test_plot_writes_pngs_from_the_results(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["plot", "--out", str(tmp_path)]) == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["aby3_layer_cost.png", "ckks_peer_ratios.png"]
    assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    with pytest.raises(SystemExit, match="no result files"):
        main(["plot", "--results", str(tmp_path / "none"), "--out", str(tmp_path)])
    from refimpl.reproduce.plots import make_all

    assert [p.name for p in make_all(out_dir=tmp_path / "again")] == ["ckks_peer_ratios.png", "aby3_layer_cost.png"]
