"""Secure inference of a whole BERT classifier under ABY3 (freeDiv: the converted model on 3PC).

Threat model (semi-honest, honest majority: ABY3 §2; what the freeDiv paper runs on SPU):
    party 0  the client: owns the token ids, is the only party that learns the logits
    party 1  the model owner: owns the parameters (refimpl.bert.model's flat dict)
    party 2  a helper server (computes, owns nothing, learns nothing)
Each of the three sees only uniformly random shares and protocol messages (tests/aby3/
test_views.py); any two together could reconstruct everything, which the model excludes.
Public by assumption: the config (architecture, attention variant, activation, freeDiv
a and b, vocabulary size), the sequence length n, the 0/1 key mask (hence the number of
real tokens; freeDiv needs n for f(n) = a n^b) and the token types. Trailing padding is
dropped before the run: it is public and never changes the logits.

Setup (once per model): the owner secret-shares every tensor (`share_params`, 2 ring
elements per weight). Per query: the client shares its ids as a one-hot matrix [n, V] of
ring integers at scale 0 (`share_tokens`: 2 ring elements per entry, 16 n V bytes, so the
size of the vocabulary is public and costs bandwidth; shipped models prune it to the
task's tokens), one matmul with the shared table gives the word embeddings at scale 2^f
with no truncation (24 B per output element); position and token-type rows are selected
locally (public indices). Then the embedding LayerNorm, the encoder layers
(`encoder.encoder_layer`), pooling ([CLS] row, or the masked mean by a public 1/n) and
the linear head; the logits are opened to party 0 only (`reveal(..., to=0)`: party 1
sends its component x_2 to party 0, one ring element per logit; parties 1 and 2 receive
nothing, so they never learn the prediction).

Fixed point: ring Z_2^64, f = 18 fraction bits (SPU FM64 default); every fixed-point
product is truncated once by the wrap-corrected 1-round truncation (error < 1 ulp, never
fails for |x| < 2^62); 1/d of LayerNorm's mean and variance carries 30 bits, 1/f(n) of
2Quad-freeDiv 24 bits, 1/sqrt(d_head) is exact (t bits, folded into the Q K^T
truncation); division rows keep 8 extra bits; exp keeps f + r bits in its squarings.
Reference: BERT (Devlin et al.); freeDiv §3 (secure inference of the converted model);
MPCFormer and PUMA (one-hot embedding lookup); ABY3 (protocols).
"""

from __future__ import annotations

import time

import numpy as np

from refimpl.aby3 import arith
from refimpl.aby3.attention import layer_norm
from refimpl.aby3.encoder import LAYER_KEYS, encoder_layer
from refimpl.aby3.nonlinear import broadcast
from refimpl.aby3.network import LAN, WAN
from refimpl.aby3.party import Party, simulate
from refimpl.aby3.shares import AShare, reveal, share_input
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


def trim_padding(input_ids, attention_mask) -> tuple[np.ndarray, np.ndarray]:
    """Drop trailing padding (public): ids [n], mask [n] -> the first n' = last real token + 1."""
    ids = np.asarray(input_ids)
    mask = np.ones(ids.shape, dtype=np.int64) if attention_mask is None else np.asarray(attention_mask)
    if ids.ndim != 1 or mask.shape != ids.shape:
        raise ValueError(f"input_ids and attention_mask must be 1-D of one length, got {ids.shape} and {mask.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError("attention_mask must hold only 0 and 1")
    real = np.flatnonzero(mask)
    if real.size == 0:
        raise ValueError("attention_mask has no real token")
    n = int(real[-1]) + 1
    return ids[:n], mask[:n].astype(np.int64)


def secure_classify(config: BertConfig, params: dict, input_ids, attention_mask=None, *, seed: int = 0,
                    token_type_ids=None) -> dict:
    """Classify one sequence with the three parties run in-process (threads); the client gets the logits.

    Returns logits (float64 [num_labels], what party 0 opened) and the per-query costs, the
    one-time weight sharing excluded: bytes (all parties), rounds (critical path), sends
    (largest per-party send count), wall_s (the 3-thread simulation on this machine),
    lan_s / wan_s (network.LAN / WAN: wall + rounds RTT + largest party bytes / bandwidth),
    n (tokens after trimming padding), setup_bytes (sharing the weights).
    Reference: freeDiv §3; ABY3.
    """
    from refimpl.bert.model import check_params

    check_params(config, params, head=True)
    ids, mask = trim_padding(input_ids, attention_mask)
    types = None if token_type_ids is None else np.asarray(token_type_ids)[: ids.size]
    times = [0.0] * 3

    def prog(p: Party):
        with p.net.scope("setup"):
            w = share_params(p, config, params if p.id == 1 else None)
        t0 = time.perf_counter()
        with p.net.scope("query"):
            toks = share_tokens(p, ids if p.id == 0 else None, config.vocab_size)
            out = reveal(p, secure_forward(p, config, w, toks, mask, types), to=0)
        times[p.id] = time.perf_counter() - t0
        return out

    res = simulate(prog, seed=seed)
    q = res.scope("query")
    per_party = max(n.scopes["query"].bytes_sent for n in res.nets)
    wall = max(times)
    return {
        "logits": np.asarray(res.outputs[0], dtype=np.float64), "bytes": q["bytes"], "rounds": q["rounds"],
        "sends": q["sends"], "wall_s": wall, "lan_s": LAN.estimate(wall, q["rounds"], per_party),
        "wan_s": WAN.estimate(wall, q["rounds"], per_party), "n": int(ids.size),
        "setup_bytes": res.scope("setup")["bytes"],
    }
