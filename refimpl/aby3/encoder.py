"""One BERT encoder layer on shares (post-LayerNorm BERT; freeDiv's secure inference under ABY3).

Weights use the checkpoint's names and layout (linear weights [out, in], STYLE.md §1) and
may be secret (AShare, shared by the model owner) or public (numpy). Activations are
always secret. Every linear layer is one fused fixed-point matmul (42 B per output
element, independent of the inner dimension); the score scaling 1/sqrt(d_head) is folded
into the truncation of Q K^T.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.aby3 import arith
from refimpl.aby3.arith import matmul_local, trunc3
from refimpl.aby3.attention import activation, attention_probs, layer_norm
from refimpl.aby3.fixed import public_fixed
from refimpl.aby3.nonlinear import broadcast
from refimpl.aby3.party import Party
from refimpl.aby3.shares import AShare

LAYER_KEYS = (
    "attention.self.query.weight", "attention.self.query.bias",
    "attention.self.key.weight", "attention.self.key.bias",
    "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias",
    "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
    "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias",
    "output.LayerNorm.weight", "output.LayerNorm.bias",
)


def linear(p: Party, x: AShare, w: AShare, b: AShare) -> AShare:
    """x W^T + b for secret W [out, in], b [out]: one fused fixed-point matmul."""
    y = arith.fxp_matmul(p, x, w.transpose())  # [n, in] @ [in, out]
    return arith.add(p, y, broadcast(p, b, y.shape))


def _heads(x: AShare, h: int) -> AShare:  # [n, d] -> [h, n, d/h]
    n, d = x.shape
    return x.reshape(n, h, d // h).transpose(1, 0, 2)


def encoder_layer(p: Party, x: AShare, w: dict, mask: np.ndarray, *, heads: int,
                  attention: str = "softmax", act: str = "gelu", eps: float = 1e-12,
                  attention_kw: dict | None = None) -> AShare:
    """BERT layer: h = LN(x + Attn(x)), out = LN(h + W2 act(W1 h)); x [n, d] -> [n, d].

    Attn: Q, K, V = x W^T + b; s = Q K^T / sqrt(d_head) per head; P = attention_probs(s);
    context = P V; Attn(x) = context W_o^T + b_o. attention_kw: c, a, b of the variant.
    Reference: BERT (Devlin et al.);
    freeDiv §3 (secure inference of the converted model).
    """
    n, d = x.shape
    dh = d // heads
    g = "attention.self."
    with p.net.scope("layer"):
        q = _heads(linear(p, x, w[g + "query.weight"], w[g + "query.bias"]), heads)  # [h, n, dh]
        k = _heads(linear(p, x, w[g + "key.weight"], w[g + "key.bias"]), heads)
        v = _heads(linear(p, x, w[g + "value.weight"], w[g + "value.bias"]), heads)
        t = arith.coef_bits(1.0 / math.sqrt(dh), p.fxp.f)  # 1/8 for d_head = 64: t = 3
        z = matmul_local(p, q, k.transpose(0, 2, 1)) * public_fixed(1.0 / math.sqrt(dh), t)
        s = trunc3(p, z + p.prss.zero(z.shape), p.fxp.f + t)  # [h, n, n] scores
        probs = attention_probs(p, s, np.broadcast_to(mask, (heads, n)), attention, **(attention_kw or {}))
        ctx = arith.fxp_matmul(p, probs, v)  # [h, n, dh]
        ctx = ctx.transpose(1, 0, 2).reshape(n, d)
        ctx = AShare(np.ascontiguousarray(ctx.a), np.ascontiguousarray(ctx.b), p.session)
        a = linear(p, ctx, w["attention.output.dense.weight"], w["attention.output.dense.bias"])
        h = layer_norm(p, arith.add(p, x, a), w["attention.output.LayerNorm.weight"],
                       w["attention.output.LayerNorm.bias"], eps)
        f = activation(p, linear(p, h, w["intermediate.dense.weight"], w["intermediate.dense.bias"]), act)
        o = linear(p, f, w["output.dense.weight"], w["output.dense.bias"])
        return layer_norm(p, arith.add(p, h, o), w["output.LayerNorm.weight"], w["output.LayerNorm.bias"], eps)
