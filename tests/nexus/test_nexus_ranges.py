"""The model owner's calibrated ranges: saved beside a model, read back, checked; the shipped models
carry SST-2 ranges that hold the demo's sentences; a sentence outside them is reported, never silent."""

import json

import numpy as np
import pytest

from refimpl import demo
from refimpl.bert import shipped
from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.cli import main as cli_main
from refimpl.nexus import bert as nb
from refimpl.nexus import protocol as P


def tiny_model(layers=2):
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16, attention="2quad-freediv", activation="quad",
                     freediv_a=84.07, freediv_b=0.7175)
    params = init_params(cfg, np.random.default_rng(3), dtype=np.float64)
    return nb.NexusModel(cfg, params)


def test_ranges_json_roundtrip_and_refusals():
    """NEXUS-BERT-RANGE: ranges_to_json / ranges_from_json give back calibrate's ranges; a malformed
    document is refused with what was expected."""
    model = tiny_model()
    rng = np.random.default_rng(0)
    r = nb.calibrate(model, [(rng.integers(1, 50, n), np.ones(n, np.int64)) for n in (4, 7)])
    doc = json.loads(json.dumps(nb.ranges_to_json(r, "two random sentences")))
    back = nb.ranges_from_json(doc, model.config)
    assert back["score_bound"] == r["score_bound"] and back["act"] == tuple(r["act"])
    assert back["var"] == {k: tuple(v) for k, v in r["var"].items()} and back["absmax"] == r["absmax"]
    with pytest.raises(ValueError, match="format 'refimpl-nexus-ranges'"):
        nb.ranges_from_json(dict(doc, format="other"), model.config)
    with pytest.raises(ValueError, match="expected score_bound"):
        nb.ranges_from_json({k: v for k, v in doc.items() if k != "act"}, model.config)
    with pytest.raises(ValueError, match=r"LayerNorm ranges .* 2-layer model"):
        nb.ranges_from_json(dict(doc, var={k: v for k, v in doc["var"].items() if k != "L1.ln2"}), model.config)
    for bad in ([2.0, 1.0], [float("nan"), 1.0], [-1.0, 2.0]):
        with pytest.raises(ValueError, match="L0.ln1 = .* must be finite with lo <= hi"):
            nb.ranges_from_json(dict(doc, var=dict(doc["var"], **{"L0.ln1": bad})), model.config)
    with pytest.raises(ValueError, match=r"stream maxima for .* expected .*'L1.sum2'"):  # a default would be used
        nb.ranges_from_json(dict(doc, absmax={k: v for k, v in doc["absmax"].items() if k != "L1.sum2"}), model.config)
    for key, value in (("absmax", dict(doc["absmax"], **{"L0.x": float("nan")})), ("score_bound", -5.0)):
        with pytest.raises(ValueError, match="must be > 0 and the stream maxima finite"):
            nb.ranges_from_json(dict(doc, **{key: value}), model.config)
    with pytest.raises(ValueError, match="act has 3 values"):
        nb.ranges_from_json(dict(doc, act=[0.0, 1.0, 2.0]), model.config)
    gelu = model.config.replace(attention="softmax", activation="gelu")
    with pytest.raises(ValueError, match="beyond exp's valid range"):
        nb.ranges_from_json(dict(doc, score_bound=128.0), gelu)
    with pytest.raises(ValueError, match="outside every Sgn prescale"):
        nb.ranges_from_json(dict(doc, act=[-40.0, 3.0]), gelu)


def test_check_ranges_refuses_a_stream_beyond_its_refresh_bound():
    """NEXUS-BERT-RANGE: a refreshed stream above the power of two over its calibrated maximum leaves
    EvalMod's accurate range: check_ranges names it."""
    model = tiny_model()
    rng = np.random.default_rng(0)
    ids, mask = rng.integers(1, 50, 6), np.ones(6, np.int64)
    model.ranges = nb.calibrate(model, [(ids, mask)])
    ref = nb.plaintext_reference(model, ids, mask, approximate=True)
    nb.check_ranges(model, ref)
    k = "L1.sum1"
    model.ranges["absmax"][k] = ref["record"]["absmax"][k] / 4.1
    with pytest.raises(ValueError, match=f"{k}: values reach .* the refresh bound"):
        nb.check_ranges(model, ref)


@pytest.mark.parametrize("name", shipped.NAMES)
def test_shipped_models_carry_ranges_that_hold_the_demo_sentences(name):
    """NEXUS-BERT-RANGE: a shipped model loads its nexus_ranges.json (SST-2 sentences), and the demo's
    sentences, as the demo trims them, stay inside: the approximations' plaintext logits give the exact
    model's label. (With ranges from random tokens the student's second layer left them and flipped it.)"""
    if not shipped.available(name):
        pytest.skip(f"shipped model {name} not built")
    m = P.load_model(name)
    path = shipped.model_dir(name) / P.RANGES_FILE
    assert P.RANGES_FILE in m.ranges_source and "SST-2" in m.ranges_source
    assert m.model.ranges == nb.ranges_from_json(json.loads(path.read_text()), m.config)
    assert m.model.ranges != nb.NexusModel(m.config, m.params).get_ranges()  # not the random-token fallback
    for s in demo.DEFAULT_SENTENCES:
        ref = m.reference_logits(demo.trim_sentence(s, demo.NEXUS_MAX_TOKENS))
        assert ref["range_error"] is None, (s, ref["range_error"])
        assert np.argmax(ref["model"]) == np.argmax(ref["exact"])
        assert np.max(np.abs(ref["model"] - ref["exact"])) < 0.05


def test_a_sentence_outside_the_ranges_is_reported_and_calibrate_writes_them(tmp_path, capsys):
    """NEXUS-BERT-RANGE: reference_logits names the range a sentence leaves and where the ranges come
    from; `refimpl nexus calibrate` writes ranges that load back; a malformed file is refused by path."""
    name = shipped.NAMES[-1]
    if not shipped.available(name):
        pytest.skip(f"shipped model {name} not built")
    tsv = tmp_path / "train.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{s}\t1\n" for s in (
        "a gorgeous , witty movie .", "the movie is a disaster .", "it 's a charming journey .")))
    out = tmp_path / "r.json"
    assert cli_main(["nexus", "calibrate", "--model", name, "--calibrate-tsv", str(tsv), "--out", str(out)]) == 0
    assert "from 3 sentences" in capsys.readouterr().out
    m = P.load_model(name)
    m.load_ranges(out)
    assert m.ranges_source.startswith(f"{tmp_path.name}/r.json: the first 3 sentences")
    ref = m.reference_logits("the plot is nothing but boilerplate clichés from start to finish")
    assert ref["range_error"] is not None and "leaves the calibrated" in ref["range_error"]
    assert "r.json" in ref["range_error"]
    out.write_text("{not json")
    with pytest.raises(P.ProtocolError, match="r.json: not JSON"):
        m.load_ranges(out)
    out.write_text(json.dumps({"format": "refimpl-nexus-ranges"}))
    with pytest.raises(P.ProtocolError, match="r.json: ranges document"):
        m.load_ranges(out)
