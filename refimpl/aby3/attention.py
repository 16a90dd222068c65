"""Secure attention variants, activations and LayerNorm over shares (freeDiv; MPCFormer; DESIGN.md §5).

Scores s [..., n_q, n_k] are secret; the 0/1 key mask m [..., n_k] and n = sum(m) are
public (the threat model says so). Every variant but softmax applies m multiplicatively
after its elementwise function (a local product by public integers). The plaintext
definitions these match are refimpl.bert.functional.attention_probs / activation /
layer_norm.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.aby3 import arith
from refimpl.aby3.arith import fxp_mul, mul_local, trunc3
from refimpl.aby3.fixed import U64, public_fixed
from refimpl.aby3.nonlinear import (
    broadcast,
    exp_neg,
    fused_sums,
    gelu_erf,
    gelu_erf_as,
    gelu_poly4,
    max_last_axis,
    quad,
    reciprocal,
    relu,
    rsqrt,
)
from refimpl.aby3.party import Party
from refimpl.aby3.shares import AShare
from refimpl.constants import C

VARIANTS = ("softmax", "2quad", "2relu", "scaling", "softmax-freediv", "2quad-freediv")
ACTIVATIONS = {"gelu": gelu_erf, "gelu_poly4": gelu_poly4, "quad": quad, "relu": relu,
               "gelu_as": gelu_erf_as}  # gelu_as: SPU's erf recipe (speed table baseline only)
QUAD_C = float(C["freediv"]["quad_c"])
FREEDIV = {
    "softmax-freediv": (float(C["freediv"]["softmax"]["a"]), float(C["freediv"]["softmax"]["b"])),
    "2quad-freediv": (float(C["freediv"]["quad2"]["a"]), float(C["freediv"]["quad2"]["b"])),
}
SOFTMAX_MASK_SHIFT = 512.0  # added below masked scores: exp's clamp sends them to exactly 0
DIV_EXTRA_BITS = 8  # the row reciprocal keeps 8 more fraction bits: |num / den| <= 1 leaves room
FREEDIV_COEF_BITS = 24
LN_INV_D_BITS = 30  # 1/d to 1e-9; needs |mean|, var < 2^13  # 1/f(n) is small (1/2732 at n = 128): encode it with 24 bits, not 18


def _mask_int(m: np.ndarray, shape: tuple) -> np.ndarray:
    return np.broadcast_to(np.asarray(m)[..., None, :], shape).astype(np.int64).view(U64)


def _mask(p: Party, x: AShare, m: np.ndarray) -> AShare:
    mi = _mask_int(m, x.shape)
    return AShare(x.a * mi, x.b * mi, p.session)


def _divide_rows(p: Party, num: AShare) -> AShare:
    """num / sum(num, last axis): one reciprocal per row, one multiplication per element."""
    den = arith.sum_axis(p, num, -1, keepdims=True)  # [..., n_q, 1]
    den = arith.add_raw(p, den, U64(1))  # + 1 ulp: a row of zeros gives 0, not a division by 0
    inv = reciprocal(p, den, extra_bits=DIV_EXTRA_BITS)  # 1/den at scale 2^(f + 8)
    return trunc3(p, mul_local(p, num, broadcast(p, inv, num.shape)), p.fxp.f + DIV_EXTRA_BITS)


def attention_probs(p: Party, s: AShare, mask: np.ndarray, variant: str, *, c: float = QUAD_C,
                    a: float | None = None, b: float | None = None) -> AShare:
    """Attention probabilities of `variant` from secret scores s [..., n_q, n_k] (public mask).

    softmax          exp(s - max) m / sum          max tree + exp + reciprocal per row
    2quad            (s + c)^2 m / sum             one fxp square + reciprocal per row
    2relu            ReLU(s) m / sum               ReLU + reciprocal per row
    scaling          s m / n                       one public product (one truncation)
    softmax-freediv  exp(s - max) m / f(n)         max tree + exp: f(n) = a n^b is public
    2quad-freediv    (s + c)^2 m / f(n)            one product + one truncation (42 B)
    Assumes |s| < 2^8 (2quad-freediv: |s + c| < 2^6).
    Reference: freeDiv (Liu et al. 2024), MPCFormer (2Quad, 2ReLU), MPCViT (Scaling).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown attention variant {variant!r}; expected one of {VARIANTS}")
    mask = np.asarray(mask)
    if mask.shape[-1] != s.shape[-1]:
        raise ValueError(f"mask has {mask.shape[-1]} keys, scores have {s.shape[-1]}")
    n = mask.sum(-1)[..., None, None]  # [..., 1, 1] public
    if np.any(n < 1):
        raise ValueError("every row needs at least one real key (n >= 1)")
    with p.net.scope(f"attn_{variant}"):
        if variant in ("softmax", "softmax-freediv"):  # exp(s - max): the row max by a comparison tree
            mi = _mask_int(mask, s.shape)
            shifted = arith.add_public(p, s, (np.broadcast_to(np.asarray(mask)[..., None, :], s.shape) - 1.0) * SOFTMAX_MASK_SHIFT)
            mx = max_last_axis(p, shifted)
            x = arith.sub(p, shifted, broadcast(p, mx, s.shape))
            if variant == "softmax":
                e = exp_neg(p, x)
                return _divide_rows(p, AShare(e.a * mi, e.b * mi, p.session))
            f_n = _freediv_f(variant, n, a, b)  # softmax-freediv: the division becomes a public scale
            e = exp_neg(p, x, out_scale=np.broadcast_to(1.0 / f_n, s.shape))
            return AShare(e.a * mi, e.b * mi, p.session)
        if variant == "2quad":
            u = arith.add_public(p, s, c)
            return _divide_rows(p, _mask(p, fxp_mul(p, u, u), mask))
        if variant == "2relu":
            return _divide_rows(p, _mask(p, relu(p, s), mask))
        if variant == "scaling":
            return arith.mul_public(p, _mask(p, s, mask), np.broadcast_to(1.0 / n, s.shape))
        f_n = _freediv_f(variant, n, a, b)
        u = arith.add_public(p, s, c)  # 2quad-freediv: (s + c)^2 m / f(n), one truncation
        t = FREEDIV_COEF_BITS
        k = public_fixed(np.broadcast_to(1.0 / f_n, s.shape), t) * _mask_int(mask, s.shape)
        z = mul_local(p, u, u) * k + p.prss.zero(s.shape)  # re-mask: k = 0 on masked keys
        return trunc3(p, z, p.fxp.f + t)


def _freediv_f(variant: str, n: np.ndarray, a: float | None, b: float | None) -> np.ndarray:
    """The public denominator f(n) = a n^b of a freeDiv variant (a, b default to the paper's)."""
    a0, b0 = FREEDIV[variant]
    return (a0 if a is None else a) * n.astype(np.float64) ** (b0 if b is None else b)


def activation(p: Party, x: AShare, name: str) -> AShare:
    """The FFN activation `name` (gelu = erf form, gelu_poly4, quad, relu) on shares."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name](p, x)


def layer_norm(p: Party, x: AShare, gamma, beta, eps: float = 1e-12) -> AShare:
    """(x - mean) / sqrt(var + eps) gamma + beta over the last axis; gamma, beta public or shared.

    mean and var are local sums and per-row truncations, with 1/d encoded at 30 bits (at
    18 bits 1/768 is off by 1e-3, which would bias every output by 5e-4);
    1/sqrt per row by `rsqrt` (needs 2^-f <= var < 2^20); eps below one ulp is replaced
    by one ulp. Reference: Ba et al. (LayerNorm); SPU/PUMA LayerNorm; NEXUS LayerNorm.
    """
    d = x.shape[-1]
    with p.net.scope("layer_norm"):
        ssum = arith.sum_axis(p, x, -1, keepdims=True)
        mean = arith.mul_public(p, ssum, 1.0 / d, t=LN_INV_D_BITS)  # [n, 1]
        xc = arith.sub(p, x, broadcast(p, mean, x.shape))
        z = mul_local(p, xc, xc).sum(axis=-1, keepdims=True, dtype=U64)  # 3-of-3 sum of squares
        ssq = trunc3(p, z + p.prss.zero(z.shape), p.fxp.f)  # sum of squares at scale 2^f
        var = arith.mul_public(p, ssq, 1.0 / d, t=LN_INV_D_BITS)  # per row: cheap
        var = arith.add_public(p, var, max(eps, 2.0**-p.fxp.f))
        r = rsqrt(p, var)
        if isinstance(gamma, AShare):
            y = fxp_mul(p, fxp_mul(p, xc, broadcast(p, r, x.shape)), broadcast(p, gamma, x.shape))
        else:
            g = np.broadcast_to(np.asarray(gamma, dtype=np.float64), x.shape)
            bound = math.sqrt(d) * float(np.max(np.abs(g)))  # |(x - mean) / std| <= sqrt(d)
            (y,) = fused_sums(p, [([(g, xc, broadcast(p, r, x.shape))], 0.0)], bound=bound)
        if isinstance(beta, AShare):
            return arith.add(p, y, broadcast(p, beta, x.shape))
        return arith.add_public(p, y, np.broadcast_to(np.asarray(beta, dtype=np.float64), x.shape))
