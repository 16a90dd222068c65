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
from dataclasses import dataclass

import numpy as np

from refimpl.aby3 import arith
from refimpl.aby3.attention import layer_norm
from refimpl.aby3.encoder import LAYER_KEYS, encoder_layer
from refimpl.aby3.kernels import matmul_u64
from refimpl.aby3.nonlinear import broadcast
from refimpl.aby3.network import LAN, WAN
from refimpl.aby3.party import Party, simulate
from refimpl.aby3.shares import AShare, check_same_run, reveal, share_input
from refimpl.bert.config import BertConfig
from refimpl.bert.model import check_params, param_shapes


def share_params(p: Party, config: BertConfig, params: dict | None, owner: int = 1) -> dict[str, AShare]:
    """The owner shares every tensor of the model (others pass params=None): 2 ring elements per weight.

    Done once per model; queries reuse the shares. Reference: ABY3 §5 (input sharing).
    """
    names = list(param_shapes(config, head=True))
    if p.id == owner:
        missing = [k for k in names if k not in params]
        if missing:
            raise KeyError(f"parameter {missing[0]!r} is missing")
    return {k: share_input(p, owner, params[k] if p.id == owner else None) for k in names}


@dataclass(frozen=True)
class OneHot:
    """The client's ids as a one-hot matrix X [n, V] (scale 0), 2-of-2 shared between the two servers.

    Party o (the client) keeps the ids; party o+1 holds X_{o+1} = F(k_{o+1}) (PRSS: only
    the public n is sent), party o+2 holds X_{o+2} = X - X_{o+1} (sent by the client).
    Each server's part alone is uniformly random. Consumed by `onehot_matmul`.
    """

    owner: int
    ids: np.ndarray | None  # at the owner only
    part: np.ndarray | None  # X_{o+1} or X_{o+2} [n, V] at the two servers, None at the owner
    n: int
    vocab: int
    session: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.vocab)


def share_tokens(p: Party, input_ids: np.ndarray | None, vocab_size: int, owner: int = 0) -> OneHot:
    """The client's ids [n] as a one-hot [n, V], 2-of-2 shared: 1 round, one ring element per entry.

    The client sends X - X_{o+1} to party o+2 and announces the public length n to party
    o+1 (8 B, same round), which draws X_{o+1} from the key it shares with the client.
    Reference: MPCFormer/PUMA (one-hot embedding); ABY3 §5 input sharing, with one copy.
    """
    o, i = owner, p.id
    if not 0 <= o < 3:
        raise ValueError(f"owner must be party 0, 1 or 2, got {o}")
    with p.net.scope("share_tokens"):
        if i == o:
            ids = np.asarray(input_ids) if input_ids is not None else None
            if ids is None or ids.ndim != 1 or ids.size == 0 or np.any((ids < 0) | (ids >= vocab_size)):
                raise ValueError(f"input_ids must be a non-empty 1-D array of ids in [0, {vocab_size})")
            x = np.zeros((ids.size, vocab_size), dtype=np.uint64)
            x[np.arange(ids.size), ids] = 1
            x1 = p.prss.draw((o + 1) % 3, x.shape)  # X_{o+1} from key k_{o+1}, shared with party o+1
            p.net.send((o + 1) % 3, np.array([ids.size], dtype=np.uint64))  # public n
            p.net.send((o + 2) % 3, x - x1)  # X_{o+2} = X - X_{o+1} to party o+2
            return OneHot(o, ids, None, ids.size, vocab_size, p.session)
        if i == (o + 1) % 3:
            n = int(p.net.recv(o)[0])
            return OneHot(o, None, p.prss.draw(i, (n, vocab_size)), n, vocab_size, p.session)
        part = p.net.recv(o)
        return OneHot(o, None, part, part.shape[0], vocab_size, p.session)


def onehot_matmul(p: Party, x: OneHot, y: AShare) -> AShare:
    """[X Y] for the client's one-hot X (2-of-2 between the servers) and a replicated Y [V, d].

    With o the client: z_o = X (Y_o + Y_{o+1}) is a row gather (party o holds both and knows
    the ids), z_{o+1} = X_{o+1} Y_{o+2} and z_{o+2} = X_{o+2} Y_{o+2} are one dense matmul
    each (both servers hold Y_{o+2}); z_0 + z_1 + z_2 = X Y, masked by a zero share and
    reshared: 1 round, 24 B per output element. Two dense [n, V] x [V, d] products in all
    instead of six for a replicated X. Reference: ABY3 §5.1 matmul (the 3-of-3 product).
    """
    check_same_run(p, y)
    if x.session != p.session:
        raise ValueError(f"party {p.id}: one-hot ids from session {x.session} used in session {p.session}")
    if y.shape[0] != x.vocab:
        raise ValueError(f"one-hot [n, {x.vocab}] times a table of {y.shape[0]} rows")
    o = x.owner
    with p.net.scope("onehot_matmul"):
        if p.id == o:
            z = y.a[x.ids] + y.b[x.ids]  # party o holds (Y_o, Y_{o+1}): X (Y_o + Y_{o+1}) = rows ids
        elif p.id == (o + 1) % 3:
            z = matmul_u64(x.part, y.b)  # party o+1 holds (Y_{o+1}, Y_{o+2})
        else:
            z = matmul_u64(x.part, y.a)  # party o+2 holds (Y_{o+2}, Y_o)
        return arith.reshare(p, np.ascontiguousarray(z) + p.prss.zero(z.shape))


def _rows(x: AShare, idx: np.ndarray) -> AShare:
    return AShare(np.ascontiguousarray(x.a[idx]), np.ascontiguousarray(x.b[idx]), x.session)


def secure_embeddings(p: Party, config: BertConfig, w: dict[str, AShare], tokens: OneHot,
                      token_type_ids: np.ndarray | None = None) -> AShare:
    """LayerNorm(onehot @ word + position[0..n-1] + token_type[types]) on shares: [n, V] -> [n, d].

    The one-hot is at scale 0, so the matmul needs no truncation (1 round, 24 B per output
    element); position and type rows are public indices (local). Reference: BERT; MPCFormer.
    """
    n = tokens.shape[0]
    types = np.zeros(n, dtype=np.int64) if token_type_ids is None else np.asarray(token_type_ids)
    with p.net.scope("embeddings"):
        e = onehot_matmul(p, tokens, w["embeddings.word_embeddings.weight"])  # [n, d], scale 2^f, no truncation
        e = arith.add(p, e, _rows(w["embeddings.position_embeddings.weight"], np.arange(n)))
        e = arith.add(p, e, _rows(w["embeddings.token_type_embeddings.weight"], types))
        return layer_norm(p, e, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], config.layer_norm_eps)


def secure_head(p: Party, config: BertConfig, w: dict[str, AShare], x: AShare, attention_mask: np.ndarray) -> AShare:
    """Pooling ([CLS] row, or the masked mean with a public 1/n) and the linear head: [n, d] -> [num_labels]."""
    mask = np.asarray(attention_mask)
    with p.net.scope("head"):
        if config.pooling == "cls":
            pooled = x[0:1]  # [1, d]
        else:
            m = mask.astype(np.int64).view(np.uint64)[:, None]
            s = arith.sum_axis(p, AShare(x.a * m, x.b * m, p.session), 0, keepdims=True)
            pooled = arith.mul_public(p, s, 1.0 / mask.sum())
        logits = arith.fxp_matmul(p, pooled, w["classifier.weight"].transpose())  # [1, labels]
        return arith.add(p, logits, broadcast(p, w["classifier.bias"].reshape(1, -1), logits.shape))[0]


def layer_weights(w: dict[str, AShare], layer: int) -> dict[str, AShare]:
    """The tensors of encoder layer `layer` under their in-layer names (encoder.LAYER_KEYS)."""
    return {k: w[f"encoder.layer.{layer}.{k}"] for k in LAYER_KEYS}


def attention_kw(config: BertConfig) -> dict:
    """c of 2Quad and (a, b) of f(n) = a n^b for the freeDiv variants."""
    kw = {"c": config.quad_c}
    if config.freediv is not None:
        kw["a"], kw["b"] = config.freediv
    return kw


def secure_forward(p: Party, config: BertConfig, w: dict[str, AShare], tokens: OneHot,
                   attention_mask: np.ndarray, token_type_ids: np.ndarray | None = None) -> AShare:
    """Logits [num_labels] of one sequence (shares): embeddings, encoder layers, head.

    Reference: BERT; freeDiv §3; MPCFormer.
    """
    mask = np.asarray(attention_mask)
    with p.net.scope("bert"):
        x = secure_embeddings(p, config, w, tokens, token_type_ids)
        for layer in range(config.num_hidden_layers):
            x = encoder_layer(p, x, layer_weights(w, layer), mask, heads=config.num_attention_heads,
                              attention=config.attention, act=config.activation, eps=config.layer_norm_eps,
                              attention_kw=attention_kw(config))
        return secure_head(p, config, w, x, mask)


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


def classify_program(config: BertConfig, params: dict | None, ids: np.ndarray | None, mask: np.ndarray,
                     token_type_ids: np.ndarray | None = None):
    """program(p) -> (logits at party 0 / None elsewhere, seconds of the query) for `simulate` or
    `tcp.run_party`: scope "setup" shares the weights (party 1 passes params, the others may pass
    None), scope "query" shares the client's one-hot ids (party 0 passes ids), runs
    `secure_forward` and opens the logits to party 0."""
    mask = np.asarray(mask)

    def prog(p: Party):
        with p.net.scope("setup"):
            w = share_params(p, config, params if p.id == 1 else None)
        t0 = time.perf_counter()
        with p.net.scope("query"):
            toks = share_tokens(p, ids if p.id == 0 else None, config.vocab_size)
            out = reveal(p, secure_forward(p, config, w, toks, mask, token_type_ids), to=0)
        return out, time.perf_counter() - t0

    return prog


def secure_classify(config: BertConfig, params: dict, input_ids, attention_mask=None, *,
                    insecure_seed: int | None = None, token_type_ids=None) -> dict:
    """Classify one sequence with the three parties run in-process (threads); the client gets the logits.

    Returns logits (float64 [num_labels], what party 0 opened) and the per-query costs, the
    one-time weight sharing excluded: bytes (all parties), rounds (critical path), sends
    (largest per-party send count), wall_s (the 3-thread simulation on this machine),
    lan_s / wan_s (network.LAN / WAN: wall + rounds RTT + largest party bytes / bandwidth),
    n (tokens after trimming padding), setup_bytes (sharing the weights).
    Randomness from the OS; `insecure_seed` makes the run reproducible (tests and examples only).
    Reference: freeDiv §3; ABY3.
    """
    check_params(config, params, head=True)
    ids, mask = trim_padding(input_ids, attention_mask)
    types = None if token_type_ids is None else np.asarray(token_type_ids)[: ids.size]
    res = simulate(classify_program(config, params, ids, mask, types), insecure_seed=insecure_seed)
    times = [o[1] for o in res.outputs]
    q = res.scope("query")
    per_party = max(n.scopes["query"].bytes_sent for n in res.nets)
    wall = max(times)
    return {
        "logits": np.asarray(res.outputs[0][0], dtype=np.float64), "bytes": q["bytes"], "rounds": q["rounds"],
        "sends": q["sends"], "wall_s": wall, "lan_s": LAN.estimate(wall, q["rounds"], per_party),
        "wan_s": WAN.estimate(wall, q["rounds"], per_party), "n": int(ids.size),
        "setup_bytes": res.scope("setup")["bytes"],
    }
