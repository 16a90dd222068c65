"""`refimpl reproduce speed --quick` (ABY3-SPEED-1): every variant pair, model = embeddings + L layers + head."""

import json

import numba

from refimpl.cli import main as cli_main
from refimpl.reproduce import speed


def test_speed_quick_table(tmp_path, capsys):
    """ABY3-SPEED-1: 7 rows (both baselines); counts add exactly; 2Quad-freeDiv+Quad sends fewer
    bytes and needs fewer rounds than Softmax+GeLU; speedups are the baseline's / the row's; errors small."""
    out = tmp_path / "speed.json"
    assert cli_main(["reproduce", "speed", "--quick", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["threads"]["numba"] == numba.get_num_threads()  # recorded: a 1-thread run is not comparable
    s = doc["sizes"]["quick"]
    rows = {(r["attention"], r["activation"]): r for r in s["rows"]}
    assert set(rows) == set(speed.PAIRS)
    L = s["size"]["layers"]
    for r in rows.values():
        for k in ("bytes", "rounds", "sends"):
            assert r["model"][k] == s["embeddings"][k] + L * r["layer"][k] + s["head"][k]
        assert r["layer"]["max_abs_err"] < 0.05
        assert r["model"]["wan_s"] > r["model"]["lan_s"] > 0
    base, fd = rows[("softmax", "gelu")], rows[("2quad-freediv", "quad")]
    assert fd["layer"]["bytes"] < base["layer"]["bytes"] / 3 and fd["layer"]["rounds"] < base["layer"]["rounds"]
    assert fd["speedup_vs_erf"]["bytes"] == round(base["model"]["bytes"] / fd["model"]["bytes"], 3)
    assert base["speedup_vs_erf"]["lan_s"] == 1.0
    assert "| 2quad-freediv + quad |" in capsys.readouterr().out
