"""Secure inference of a whole BERT classifier under ABY3 (freeDiv: the converted model on 3PC).

The client (party 0) owns the token ids, the model owner (party 1) the parameters
(refimpl.bert.model's flat dict, checkpoint names); party 2 only helps. Public: the
sequence length, the key mask (which tokens are padding), the token types and the config.
The result (logits) is opened to the client only.

Embedding lookup: the client shares its ids as a one-hot matrix [n, V] of ring integers
(scale 0), so one matmul with the shared table gives the embeddings at scale 2^f with no
truncation (24 B per output element; the one-hot input costs 2 ring elements per entry,
which is why shipped models prune the vocabulary). Position and token-type rows are
selected locally (public indices). Then embedding LayerNorm, the encoder layers, pooling
([CLS] or the masked mean) and the linear head.
"""

from __future__ import annotations

import numpy as np

from refimpl.aby3 import arith
from refimpl.aby3.attention import layer_norm
from refimpl.aby3.encoder import LAYER_KEYS, encoder_layer
from refimpl.aby3.nonlinear import broadcast
from refimpl.aby3.party import Party
from refimpl.aby3.shares import AShare, share_input
from refimpl.bert.config import BertConfig


def share_params(p: Party, config: BertConfig, params: dict | None, owner: int = 1) -> dict[str, AShare]:
    """The owner shares every tensor of the model (others pass params=None)."""
    from refimpl.bert.model import param_shapes

    names = list(param_shapes(config, head=True))
    if p.id == owner:
        missing = [k for k in names if k not in params]
        if missing:
            raise KeyError(f"parameter {missing[0]!r} is missing")
    return {k: share_input(p, owner, params[k] if p.id == owner else None) for k in names}


def share_tokens(p: Party, input_ids: np.ndarray | None, vocab_size: int, owner: int = 0) -> AShare:
    """The client's ids [n] as a shared one-hot matrix [n, V] of ring integers (scale 0)."""
    onehot = None
    if p.id == owner:
        ids = np.asarray(input_ids)
        if ids.ndim != 1 or np.any((ids < 0) | (ids >= vocab_size)):
            raise ValueError(f"input_ids must be a 1-D array of ids in [0, {vocab_size})")
        onehot = np.zeros((ids.size, vocab_size), dtype=np.uint64)
        onehot[np.arange(ids.size), ids] = 1
    return share_input(p, owner, onehot, raw=True)


def _rows(x: AShare, idx: np.ndarray) -> AShare:
    return AShare(np.ascontiguousarray(x.a[idx]), np.ascontiguousarray(x.b[idx]), x.session)


def secure_forward(p: Party, config: BertConfig, w: dict[str, AShare], tokens: AShare,
                   attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None) -> AShare:
    """Logits [num_labels] of one sequence (shares). Reference: BERT; freeDiv §3; MPCFormer."""
    n = tokens.shape[0]
    mask = np.asarray(attention_mask)
    types = np.zeros(n, dtype=np.int64) if token_type_ids is None else np.asarray(token_type_ids)
    kw = {"c": config.quad_c}
    if config.attention.endswith("freediv"):
        kw.update(a=config.freediv_a, b=config.freediv_b)
    with p.net.scope("bert"):
        e = arith.matmul(p, tokens, w["embeddings.word_embeddings.weight"])  # [n, d], scale 2^f, no truncation
        e = arith.add(p, e, _rows(w["embeddings.position_embeddings.weight"], np.arange(n)))
        e = arith.add(p, e, _rows(w["embeddings.token_type_embeddings.weight"], types))
        x = layer_norm(p, e, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], config.layer_norm_eps)
        for layer in range(config.num_hidden_layers):
            lw = {k: w[f"encoder.layer.{layer}.{k}"] for k in LAYER_KEYS}
            x = encoder_layer(p, x, lw, mask, heads=config.num_attention_heads, attention=config.attention,
                              act=config.activation, eps=config.layer_norm_eps, attention_kw=kw)
        if config.pooling == "cls":
            pooled = x[0:1]  # [1, d]
        else:
            m = mask.astype(np.int64).view(np.uint64)[:, None]
            s = arith.sum_axis(p, AShare(x.a * m, x.b * m, p.session), 0, keepdims=True)
            pooled = arith.mul_public(p, s, 1.0 / mask.sum())
        logits = arith.fxp_matmul(p, pooled, w["classifier.weight"].transpose())  # [1, labels]
        return arith.add(p, logits, broadcast(p, w["classifier.bias"].reshape(1, -1), logits.shape))[0]
