"""The facades for the common paths (ours): CKKS context, NEXUS block keys, ABY3 one-call runner, load_model."""

import json
import shutil

import numpy as np
import pytest

from refimpl.aby3 import Report, arith, run
from refimpl.bert import load_model
from refimpl.bert.config import BertConfig, labels_from_json
from refimpl.bert.shipped import available, model_dir
from refimpl.ckks import Context, ParameterError
from refimpl.ckks.bootstrap import bootstrapping_context
from refimpl.nexus import keys_for

SHIPPED = "sst2-small-softmax-gelu"


def test_ckks_context_multiply_rotate_decrypt():
    """PROJ-FACADE-CKKS: one call makes the keys; encrypt at the top level; x*y rotated by 3 within 2^-14."""
    ctx = Context.create("toy-1024", rotations=[3], insecure_seed=1)
    x, y = np.linspace(-1, 1, ctx.slots), np.linspace(1, -1, ctx.slots)
    ct = ctx.encrypt(x)
    assert ct.level == ctx.params.L == ctx.usable_level
    out = ctx.rotate(ctx.multiply(ct, ctx.encrypt(y)), 3)
    assert out.level == ctx.params.L - 1
    assert np.max(np.abs(ctx.decrypt(out) - np.roll(x * y, -3))) < 2.0**-14
    assert np.max(np.abs(ctx.decrypt(ctx.multiply(ct, 0.5)) - x / 2)) < 2.0**-14
    with pytest.raises(ParameterError):
        ctx.bootstrap(ct)  # no bootstrapper in this context


def test_ckks_context_bootstraps_and_refuses_levels_above_the_output_level():
    """PROJ-FACADE-CKKS: with bootstrap=, ciphertexts start at the bootstrapper's output level; above it raises."""
    ctx = bootstrapping_context("toy-2^10-deep", insecure_seed=2)
    assert ctx.usable_level == ctx.bootstrapper.output_level < ctx.params.L
    x = np.linspace(-0.5, 0.5, ctx.slots)
    ct = ctx.encrypt(x)
    assert ct.level == ctx.usable_level
    with pytest.raises(ParameterError, match="above the usable level"):
        ctx.encrypt(x, level=ctx.params.L)
    fresh = ctx.bootstrap(ctx.evaluator.drop_level(ct, 0))
    assert fresh.level == ctx.usable_level
    assert np.max(np.abs(ctx.decrypt(fresh) - x)) < 2.0**-12


def test_nexus_keys_for_blocks():
    """PROJ-FACADE-NEXUS: folds rotate by 2^i, i < log2 n, and by -n when rows are duplicated; GELU by nothing."""
    assert keys_for("softmax", 4, window=8).rotations == (1, 2, -4)
    assert keys_for("softmax", 4, window=8).bootstrapping
    assert keys_for("argmax", 8).rotations == (1, 2, 4)
    assert keys_for("layernorm", 16, window=32).rotations == (1, 2, 4, 8, -16)
    assert keys_for("gelu").rotations == () and not keys_for("gelu").bootstrapping
    with pytest.raises(ValueError, match="unknown NEXUS block"):
        keys_for("relu")


def test_aby3_run_returns_result_and_report():
    """PROJ-FACADE-ABY3: the opened product within the fixed-point error; fxp_matmul 42 B per output element, 2 rounds."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, (3, 2))
    ab, report = run(arith.fxp_matmul, a, b, insecure_seed=3)
    assert isinstance(report, Report)
    assert np.max(np.abs(ab - a @ b)) < 1e-4
    assert report.scopes["fxp_matmul"] == {"bytes": 42 * 8, "rounds": 2, "sends": report.scopes["fxp_matmul"]["sends"]}
    assert report.compute == {"bytes": 42 * 8, "rounds": 2}
    assert report.bytes == sum(v["bytes"] for k, v in report.scopes.items() if "/" not in k)
    with pytest.raises(ValueError, match="owners"):
        run(arith.fxp_matmul, a, b, owners=(0,))


def test_config_json_carries_hf_keys_and_reads_the_old_form():
    """PROJ-FACADE-BERT: model_type and id2label/label2id written and ignored on read; old files give LABEL_i."""
    cfg = BertConfig(num_labels=2)
    text = cfg.to_json(labels=("negative", "positive"))
    d = json.loads(text)
    assert d["model_type"] == "bert" and d["id2label"] == {"0": "negative", "1": "positive"}
    assert d["label2id"] == {"negative": 0, "positive": 1}
    assert BertConfig.from_json(text) == cfg
    assert labels_from_json(cfg.to_json(), 2) == ("LABEL_0", "LABEL_1")
    with pytest.raises(ValueError):
        cfg.to_json(labels=("only one",))


@pytest.mark.skipif(not available(SHIPPED), reason="the shipped model is not built")
def test_load_model_by_name_and_path(tmp_path):
    """PROJ-FACADE-BERT: a shipped name or a directory; labels from id2label; an old config.json still loads."""
    model = load_model(SHIPPED)
    assert model.labels == ("negative", "positive")
    label, p = model("a gorgeous , witty , seductive movie .")
    assert label == "positive" and abs(p.sum() - 1) < 1e-9 and p.max() > 0.5
    assert model("the movie is a disaster from start to finish .")[0] == "negative"
    old = tmp_path / "old"
    shutil.copytree(model_dir(SHIPPED), old)
    d = json.loads((old / "config.json").read_text())
    for k in ("model_type", "id2label", "label2id"):
        d.pop(k)
    (old / "config.json").write_text(json.dumps(d))
    m2 = load_model(old)
    assert m2.labels == ("LABEL_0", "LABEL_1")
    assert np.array_equal(m2.logits("fine"), model.logits("fine"))
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing")
