"""Secure inference of a whole BERT classifier vs refimpl.bert.model.forward (ABY3-MODEL-1)."""

import numpy as np
import pytest

from refimpl.aby3.model import secure_forward, share_params, share_tokens
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal
from refimpl.bert.config import BertConfig
from refimpl.bert.model import forward, init_params


@pytest.mark.parametrize("attention,act,pooling", [("2quad-freediv", "quad", "cls"), ("softmax", "gelu", "mean")])
def test_secure_forward_matches_plaintext_logits(attention, act, pooling):
    """ABY3-MODEL-1: logits opened to the client within 1e-2 of the float64 model (2 layers)."""
    cfg = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16, attention=attention,
                     activation=act, pooling=pooling, num_labels=3)
    rng = np.random.default_rng(0)
    params = {k: (v * 10 if not k.endswith("LayerNorm.weight") else v) for k, v in
              init_params(cfg, rng, np.float64).items()}  # weights N(0, 0.2^2): non-trivial activations
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
    assert np.max(np.abs(res.outputs[0] - ref)) < 1e-2
