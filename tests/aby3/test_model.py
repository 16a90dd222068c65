"""Secure inference of a whole BERT classifier vs refimpl.bert.model.forward (ABY3-MODEL-1..3)."""

import numpy as np
import pytest

from refimpl.aby3.model import secure_classify, secure_forward, share_params, share_tokens, trim_padding
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal
from refimpl.bert.config import BertConfig
from refimpl.bert.functional import VARIANTS
from refimpl.bert.model import forward, init_params

ACTS = ("gelu", "gelu_poly4", "quad", "relu")


def _tiny(attention, act, pooling="cls", seed=0):
    cfg = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16, attention=attention,
                     activation=act, pooling=pooling, num_labels=3)
    rng = np.random.default_rng(seed)
    params = {k: (v * 10 if not k.endswith("LayerNorm.weight") else v) for k, v in
              init_params(cfg, rng, np.float64).items()}  # weights N(0, 0.2^2): non-trivial activations
    return cfg, params, rng


@pytest.mark.parametrize("attention,act,pooling", [
    (v, ACTS[i % 4], "cls" if i % 2 == 0 else "mean") for i, v in enumerate(VARIANTS)] + [("softmax", "gelu", "mean")])
def test_secure_forward_matches_plaintext_logits(attention, act, pooling):
    """ABY3-MODEL-1: every attention variant (and every activation, across the cases): the
    logits opened to the client are within 1e-2 of the float64 model (2 layers, 2 padded keys)."""
    cfg, params, rng = _tiny(attention, act, pooling)
    ids = rng.integers(0, 40, 10)
    mask = np.ones(10, dtype=np.int64)
    mask[8:] = 0

    def prog(p):
        w = share_params(p, cfg, params if p.id == 1 else None)
        toks = share_tokens(p, ids if p.id == 0 else None, cfg.vocab_size)
        return reveal(p, secure_forward(p, cfg, w, toks, mask), to=0)

    res = simulate(prog)
    ref = forward(params, cfg, ids[None], attention_mask=mask[None]).logits[0]
    assert res.outputs[1] is None and res.outputs[2] is None  # only the client learns the logits
    assert np.max(np.abs(ref)) > 0.1  # the check is not vacuous
    assert np.max(np.abs(res.outputs[0] - ref)) < 1e-2


def test_secure_classify_api_and_costs():
    """ABY3-MODEL-2: secure_classify returns the client's logits and the per-query costs; trailing
    padding is dropped (public) and leaves the logits unchanged; costs do not count weight sharing."""
    cfg, params, rng = _tiny("2quad-freediv", "quad")
    ids = np.concatenate([rng.integers(1, 40, 7), np.zeros(5, dtype=np.int64)])
    mask = (np.arange(12) < 7).astype(np.int64)
    out = secure_classify(cfg, params, ids, mask, seed=3)
    ref = forward(params, cfg, ids[None], attention_mask=mask[None]).logits[0]
    assert out["logits"].shape == (3,) and np.max(np.abs(out["logits"] - ref)) < 1e-2
    assert out["n"] == 7
    assert out["bytes"] > 0 and out["rounds"] > 0 and out["sends"] >= out["rounds"] // 2
    assert out["lan_s"] >= out["wall_s"] and out["wan_s"] > out["lan_s"]
    assert out["setup_bytes"] == 2 * 8 * sum(v.size for v in params.values())  # 2 ring elements per weight
    # the query's bytes include the client's one-hot [n, V]: 2 ring elements per entry
    assert out["bytes"] > 2 * 8 * 7 * cfg.vocab_size


def test_bad_inputs_raise():
    """ABY3-MODEL-3: bad ids, masks and parameters raise clear errors."""
    cfg, params, _ = _tiny("2quad-freediv", "quad")
    with pytest.raises(ValueError, match="no real token"):
        trim_padding(np.arange(4), np.zeros(4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        trim_padding(np.arange(4), np.array([1, 2, 1, 0]))
    with pytest.raises(ValueError, match="one length"):
        trim_padding(np.arange(4), np.ones(3))
    with pytest.raises(ValueError, match=r"ids in \[0, 40\)"):
        secure_classify(cfg, params, np.array([1, 2, 40]), np.ones(3))
    bad = dict(params)
    del bad["classifier.bias"]
    with pytest.raises(KeyError, match="classifier.bias"):
        secure_classify(cfg, bad, np.array([1, 2]), np.ones(2))
