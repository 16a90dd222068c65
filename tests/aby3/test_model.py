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
    # the query's bytes include the client's one-hot [n, V]: one ring element per entry
    assert out["bytes"] > 8 * 7 * cfg.vocab_size


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


def test_onehot_matmul_exact_costs_and_views():
    """ABY3-MODEL-4: the client's one-hot times a shared table is the exact ring product (rows of
    the table), costs 8 n V + 8 B to share and 24 B per output element, and each server's part of
    the one-hot is uniform whatever the ids (byte histogram of party 2's received part)."""
    from refimpl.aby3.model import onehot_matmul
    from refimpl.aby3.shares import share_input
    from refimpl.aby3.fixed import Fxp

    rng = np.random.default_rng(1)
    table = rng.normal(size=(50, 6))
    views = {}
    for ids in (np.array([3, 3, 3, 3, 3, 3, 3, 3]), np.array([0, 49, 7, 7, 12, 30, 1, 2])):
        def prog(p, ids=ids):
            t = share_input(p, 1, table if p.id == 1 else None)
            with p.net.scope("tok"):
                x = share_tokens(p, ids if p.id == 0 else None, 50)
            with p.net.scope("mm"):
                y = onehot_matmul(p, x, t)
            return reveal(p, y, raw=True)

        res = simulate(prog, seed=7, record_views=True)
        assert np.array_equal(res.outputs[0], Fxp().encode(table)[ids])  # exact, no rounding
        assert res.scope("tok")["bytes"] == 8 * ids.size * 50 + 8 and res.scope("tok")["rounds"] == 1
        assert res.scope("mm")["bytes"] == 24 * ids.size * 6 and res.scope("mm")["rounds"] == 1
        (part,) = [a for tag, frm, a in res.nets[2].view if tag == "tok/share_tokens"]
        views[len(set(ids))] = np.bincount(part.view(np.uint8).ravel(), minlength=256)
    a, b = views.values()
    # two-sample chi-square on byte values (3200 bytes each): a one-hot in the clear would put
    # ~98 % of bytes at 0; the shared parts are flat
    stat = np.sum((a - b) ** 2 / np.maximum(a + b, 1))
    assert stat < 255 + 6 * np.sqrt(2 * 255)
    assert a.max() < 60 and b.max() < 60  # no byte value dominates (uniform: 12.5 expected)
