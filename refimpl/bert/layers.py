"""Forward (keeping what the backward needs) and manual backward of every BERT layer.

Each `*_forward` returns (output, cache); each `*_backward(d_output, cache)` returns the
gradient of the input(s) and a dict of parameter gradients keyed by checkpoint names
(`attention.self.query.weight`, ...). The forward formulas are those of functional.py
(the reference); tests check every backward against finite differences in float64.

Shapes: B batch, n tokens, d hidden, h heads, dh = d / h, I intermediate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from refimpl.bert import functional as F
from refimpl.bert.config import BertConfig

Grads = dict[str, np.ndarray]
Cache = dict[str, Any]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)  # Python floats: float32 stays float32


# ---------------------------------------------------------------------------------------
# Linear, LayerNorm, activations
# ---------------------------------------------------------------------------------------


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """y = x W^T + b with W in PyTorch layout [out, in] (HF checkpoints).

    The leading axes are flattened first: numpy runs [B, n, in] @ [in, out] as B small GEMMs,
    3-5x slower than one [B n, in] @ [in, out] GEMM here.
    """
    y = x.reshape(-1, x.shape[-1]) @ weight.T  # [rows, out]
    y += bias
    return y.reshape(*x.shape[:-1], weight.shape[0])  # [..., in] -> [..., out]


def linear_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx = dy W, dW = dy^T x, db = sum dy over all leading axes (chain rule of y = x W^T + b)."""
    dy2 = dy.reshape(-1, dy.shape[-1])  # [rows, out]
    x2 = x.reshape(-1, x.shape[-1])  # [rows, in]
    dx = (dy2 @ weight).reshape(*dy.shape[:-1], weight.shape[1])  # [..., in]
    return dx, dy2.T @ x2, dy2.sum(axis=0)  # [..., in], [out, in], [out]


def layer_norm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> tuple[np.ndarray, Cache]:
    """LayerNorm over the last axis, as functional.layer_norm, keeping x_hat and 1/sigma (BERT)."""
    mean = x.mean(axis=-1, keepdims=True)  # [..., 1]
    xc = x - mean
    var = (xc * xc).mean(axis=-1, keepdims=True)  # [..., 1]
    rstd = 1.0 / np.sqrt(var + eps)  # [..., 1]
    xhat = xc * rstd
    return xhat * gamma + beta, {"xhat": xhat, "rstd": rstd, "gamma": gamma}


def layer_norm_backward(dy: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dx = (g - mean(g) - x_hat mean(g x_hat)) / sigma with g = dy gamma; dgamma, dbeta (LayerNorm calculus)."""
    xhat, rstd = cache["xhat"], cache["rstd"]
    d = xhat.shape[-1]
    g = dy * cache["gamma"]
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dy * xhat).reshape(-1, d).sum(axis=0), dy.reshape(-1, d).sum(axis=0)


def gelu_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, so GELU(x) = x Phi(x) (kept by the forward for the backward)."""
    return F.blockwise(lambda b: 0.5 * (1.0 + F.erf_block(b * math.sqrt(0.5))), x)


def activation_backward(dy: np.ndarray, x: np.ndarray, name: str, cdf: np.ndarray | None = None) -> np.ndarray:
    """dy * act'(x): GELU' = Phi + x phi; poly4' piecewise; Quad' = 0.25 + 0.25 x; ReLU' = [x > 0].

    cdf: Phi(x) from the forward for GELU (saves recomputing erf).
    """
    if name == "gelu":
        cdf = gelu_cdf(x) if cdf is None else cdf
        return F.blockwise(lambda g, u, p: g * (p + u * (np.exp(-0.5 * u * u) * _INV_SQRT_2PI)), dy, x, cdf)
    if name == "gelu_poly4":
        t0, t1, t2 = F.GELU_BREAKPOINTS
        dp = tuple(k * F.GELU_P[k] for k in range(1, len(F.GELU_P)))  # P'(x) coefficients
        dq = tuple(k * F.GELU_Q[k] for k in range(1, len(F.GELU_Q)))  # Q'(x) coefficients
        slope = np.where(x <= t0, 0.0, np.where(x <= t1, F.horner(x, dp), np.where(x <= t2, F.horner(x, dq), 1.0)))
        return dy * slope.astype(x.dtype, copy=False)
    if name == "quad":
        q = F.QUAD
        return dy * (q[1] + 2.0 * q[2] * x)
    if name == "relu":
        return dy * (x > 0)
    raise ValueError(f"unknown activation {name!r}; expected one of {F.ACTIVATIONS}")


# ---------------------------------------------------------------------------------------
# Attention probabilities of every variant
# ---------------------------------------------------------------------------------------


def attention_probs_backward(
    dprobs: np.ndarray,
    probs: np.ndarray,
    scores: np.ndarray,
    mask: np.ndarray,
    variant: str,
    *,
    c: float = F.QUAD_C,
    ab: tuple[float, float] | None = None,
) -> np.ndarray:
    """d scores from d probs for each variant of functional.attention_probs (quotient rule).

    With p = q / Z, Z = sum q (normalised variants): dq = (dp - sum(dp p)) / Z, then
    ds = dq q'(s) m; softmax: ds = p (dp - sum(dp p)); freeDiv: ds = dp q'(s) m / f(n), and
    softmax-freediv's shift by the row max adds -sum(dp p) at the argmax key.
    Shapes: dprobs, probs, scores [..., n_q, n_k]; mask [..., n_k] as in attention_probs.
    """
    m = F.key_mask(scores, mask)  # [..., 1, n_k]
    if variant == "softmax":
        return probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
    if variant in ("2quad", "2relu"):
        if variant == "2quad":
            u = scores + c
            dq_ds = 2.0 * u * m  # d(u^2 m)/ds
            z = (u * u * m).sum(axis=-1, keepdims=True)
        else:
            dq_ds = (scores > 0) * m
            z = (np.maximum(scores, 0.0) * m).sum(axis=-1, keepdims=True)
            z = np.where(z > 0, z, 1.0)  # as the forward: a row without a positive score is 0
        dq = (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True)) / z
        return dq * dq_ds
    n = m.sum(axis=-1, keepdims=True)  # [..., 1, 1]
    if variant == "scaling":
        return dprobs * m / n
    if variant in F.FREEDIV:
        a, b = ab if ab is not None else F.FREEDIV[variant]
        if variant == "softmax-freediv":  # p_k = e^(s_k - s_j*) m_k / f(n), j* the row's argmax
            g = dprobs * probs
            j = np.where(m > 0, scores, -np.inf).argmax(axis=-1)[..., None]  # [..., n_q, 1]
            at_max = np.arange(scores.shape[-1]) == j  # [..., n_q, n_k]
            return g - at_max * g.sum(axis=-1, keepdims=True)
        return dprobs * 2.0 * (scores + c) * m / F.freediv_denominator(n, a, b)
    raise ValueError(f"unknown attention variant {variant!r}; expected one of {F.VARIANTS}")


# ---------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------


def embeddings_forward(
    input_ids: np.ndarray, token_type_ids: np.ndarray, w: dict[str, np.ndarray], eps: float
) -> tuple[np.ndarray, Cache]:
    """LayerNorm(word[ids] + position[0..n-1] + token_type[types]) (BERT embeddings; dropout off)."""
    n = input_ids.shape[1]
    e = (w["word_embeddings.weight"][input_ids]  # [B, n, d]
         + w["position_embeddings.weight"][:n]  # [n, d]
         + w["token_type_embeddings.weight"][token_type_ids])  # [B, n, d]
    y, ln = layer_norm_forward(e, w["LayerNorm.weight"], w["LayerNorm.bias"], eps)
    return y, {"ids": input_ids, "types": token_type_ids, "ln": ln, "shapes": {k: v.shape for k, v in w.items()}}


def embeddings_backward(dy: np.ndarray, cache: Cache) -> Grads:
    """Scatter-add of the LayerNorm input gradient into the three tables (lookup transpose)."""
    de, dgamma, dbeta = layer_norm_backward(dy, cache["ln"])
    d = de.shape[-1]
    de2 = de.reshape(-1, d)  # [B n, d]
    shapes = cache["shapes"]
    dword = np.zeros(shapes["word_embeddings.weight"], de.dtype)
    np.add.at(dword, cache["ids"].ravel(), de2)  # repeated ids accumulate
    dpos = np.zeros(shapes["position_embeddings.weight"], de.dtype)
    dpos[: de.shape[1]] = de.sum(axis=0)
    dtype_ = np.zeros(shapes["token_type_embeddings.weight"], de.dtype)
    np.add.at(dtype_, cache["types"].ravel(), de2)
    return {
        "word_embeddings.weight": dword,
        "position_embeddings.weight": dpos,
        "token_type_embeddings.weight": dtype_,
        "LayerNorm.weight": dgamma,
        "LayerNorm.bias": dbeta,
    }


# ---------------------------------------------------------------------------------------
# Dropout (training only)
# ---------------------------------------------------------------------------------------


class Dropout:
    """Inverted dropout masks: keep with probability 1 - p, scale kept entries by 1 / (1 - p) (Srivastava et al. 2014; BERT p = 0.1)."""

    def __init__(self, p: float, rng: np.random.Generator):
        """p in [0, 1); rng draws every mask (seeded per step, so a resumed run draws the same masks)."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
        self.p, self.rng = p, rng

    def mask(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """0 or 1 / (1 - p) per entry."""
        return (self.rng.random(shape, dtype=np.float32) >= self.p).astype(dtype) * (1.0 / (1.0 - self.p))


# ---------------------------------------------------------------------------------------
# Self-attention block and FFN block (post-LN, as BERT)
# ---------------------------------------------------------------------------------------


def attention_forward(
    x: np.ndarray, mask: np.ndarray, w: dict[str, np.ndarray], config: BertConfig, drop: Dropout | None = None,
    softmax_share: float = 0.0,
) -> tuple[np.ndarray, Cache]:
    """LayerNorm(x + Attn(x) W_O^T + b_O), Attn = probs(Q K^T / sqrt(dh)) V per head (BERT; variant per config).

    x [B, n, d]; mask [B, n] 0/1. The Q, K, V products are one [d, 3d] matmul.
    drop: training dropout on the probabilities and on the output before the residual (BERT).
    softmax_share: see annealed_probs (ours, distillation only; 0 otherwise).
    """
    bsz, n, d = x.shape
    h, dh = config.num_attention_heads, config.head_dim
    w_qkv = np.concatenate([w["attention.self.query.weight"], w["attention.self.key.weight"],
                            w["attention.self.value.weight"]])  # [3d, d]
    b_qkv = np.concatenate([w["attention.self.query.bias"], w["attention.self.key.bias"],
                            w["attention.self.value.bias"]])  # [3d]
    qkv = linear(x, w_qkv, b_qkv).reshape(bsz, n, 3, h, dh).transpose(2, 0, 3, 1, 4)  # [3, B, h, n, dh]
    q, k, v = qkv[0], qkv[1], qkv[2]
    scale = 1.0 / math.sqrt(dh)  # Python float
    scores = (q @ k.transpose(0, 1, 3, 2)) * scale  # [B, h, n, n]
    key_mask = mask[:, None, :]  # [B, 1, n] broadcasts over heads
    probs, parts = annealed_probs(scores, key_mask, config, softmax_share)  # [B, h, n, n]
    probs_mask = None if drop is None else drop.mask(probs.shape, probs.dtype)  # [B, h, n, n]
    probs_used = probs if probs_mask is None else probs * probs_mask
    ctx = (probs_used @ v).transpose(0, 2, 1, 3).reshape(bsz, n, d)  # [B, n, d]
    out = linear(ctx, w["attention.output.dense.weight"], w["attention.output.dense.bias"])  # [B, n, d]
    out_mask = None if drop is None else drop.mask(out.shape, out.dtype)
    if out_mask is not None:
        out *= out_mask
    y, ln = layer_norm_forward(out + x, w["attention.output.LayerNorm.weight"],
                               w["attention.output.LayerNorm.bias"], config.layer_norm_eps)
    cache = {"x": x, "mask": key_mask, "q": q, "k": k, "v": v, "w_qkv": w_qkv, "scores": scores,
             "probs": probs, "ctx": ctx, "w_o": w["attention.output.dense.weight"], "ln": ln,
             "config": config, "probs_used": probs_used, "probs_mask": probs_mask, "out_mask": out_mask,
             "probs_parts": parts, "softmax_share": softmax_share}
    return y, cache


def annealed_probs(scores: np.ndarray, key_mask: np.ndarray, config: BertConfig, softmax_share: float = 0.0
                   ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """p = w softmax(s) + (1 - w) variant(s), w = softmax_share (ours: attention annealed during distillation).

    w = 0 (every deployed model) is the variant alone, and parts is None; else parts = (the
    variant's probs, softmax's probs), which the backward needs. Shapes as F.attention_probs.
    """
    variant = F.attention_probs(scores, key_mask, config.attention, c=config.quad_c, **_ab(config))
    w = softmax_share
    if w == 0.0 or config.attention == "softmax":
        return variant, None
    soft = F.attention_probs(scores, key_mask, "softmax")
    return w * soft + (1.0 - w) * variant, (variant, soft)


def _ab(config: BertConfig) -> dict[str, float]:
    """Keyword arguments a, b for attention_probs when the config overrides freeDiv's fit."""
    ab = config.freediv
    return {} if ab is None else {"a": ab[0], "b": ab[1]}


def attention_backward(
    dy: np.ndarray, cache: Cache, d_scores: np.ndarray | None = None
) -> tuple[np.ndarray, Grads]:
    """Backward of attention_forward; d_scores adds a loss term on the scores (distillation stage 1)."""
    config: BertConfig = cache["config"]
    bsz, n, d = dy.shape
    h, dh = config.num_attention_heads, config.head_dim
    scale = 1.0 / math.sqrt(dh)
    dsum, dg, db = layer_norm_backward(dy, cache["ln"])  # through LayerNorm(out + x)
    out_mask = cache.get("out_mask")
    dout = dsum if out_mask is None else dsum * out_mask
    dctx, dw_o, db_o = linear_backward(dout, cache["ctx"], cache["w_o"])  # [B, n, d]
    dctx = dctx.reshape(bsz, n, h, dh).transpose(0, 2, 1, 3)  # [B, h, n, dh]
    probs, v, q, k = cache["probs"], cache["v"], cache["q"], cache["k"]
    probs_used = cache.get("probs_used", probs)
    dprobs = dctx @ v.transpose(0, 1, 3, 2)  # [B, h, n, n]
    if cache.get("probs_mask") is not None:  # dropout on the probabilities
        dprobs *= cache["probs_mask"]
    dv = probs_used.transpose(0, 1, 3, 2) @ dctx  # [B, h, n, dh]
    parts = cache.get("probs_parts")
    if parts is None:
        dscores = attention_probs_backward(dprobs, probs, cache["scores"], cache["mask"], config.attention,
                                           c=config.quad_c, ab=config.freediv)  # [B, h, n, n]
    else:  # annealed: the weighted sum of both backwards
        w = cache["softmax_share"]
        dscores = (1.0 - w) * attention_probs_backward(dprobs, parts[0], cache["scores"], cache["mask"],
                                                       config.attention, c=config.quad_c, ab=config.freediv)
        dscores += w * attention_probs_backward(dprobs, parts[1], cache["scores"], cache["mask"], "softmax")
    if d_scores is not None:
        dscores = dscores + d_scores
    dq = (dscores @ k) * scale  # [B, h, n, dh]
    dk = (dscores.transpose(0, 1, 3, 2) @ q) * scale  # [B, h, n, dh]
    dqkv = np.stack([dq, dk, dv]).transpose(1, 3, 0, 2, 4).reshape(bsz, n, 3 * d)  # [B, n, 3d]
    dx, dw_qkv, db_qkv = linear_backward(dqkv, cache["x"], cache["w_qkv"])
    grads = {
        "attention.self.query.weight": dw_qkv[:d], "attention.self.query.bias": db_qkv[:d],
        "attention.self.key.weight": dw_qkv[d:2 * d], "attention.self.key.bias": db_qkv[d:2 * d],
        "attention.self.value.weight": dw_qkv[2 * d:], "attention.self.value.bias": db_qkv[2 * d:],
        "attention.output.dense.weight": dw_o, "attention.output.dense.bias": db_o,
        "attention.output.LayerNorm.weight": dg, "attention.output.LayerNorm.bias": db,
    }
    return dx + dsum, grads  # residual


def ffn_forward(x: np.ndarray, w: dict[str, np.ndarray], config: BertConfig,
                drop: Dropout | None = None) -> tuple[np.ndarray, Cache]:
    """LayerNorm(x + act(x W_1^T + b_1) W_2^T + b_2) (BERT FFN; activation per config; drop: training dropout before the residual)."""
    pre = linear(x, w["intermediate.dense.weight"], w["intermediate.dense.bias"])  # [B, n, I]
    cdf = None
    if config.activation == "gelu":
        cdf = gelu_cdf(pre)
        inter = pre * cdf  # = functional.gelu_erf(pre), Phi kept for the backward
    else:
        inter = F.activation(pre, config.activation)  # [B, n, I]
    out = linear(inter, w["output.dense.weight"], w["output.dense.bias"])  # [B, n, d]
    out_mask = None if drop is None else drop.mask(out.shape, out.dtype)
    if out_mask is not None:
        out *= out_mask
    y, ln = layer_norm_forward(out + x, w["output.LayerNorm.weight"], w["output.LayerNorm.bias"],
                               config.layer_norm_eps)
    return y, {"x": x, "pre": pre, "inter": inter, "w1": w["intermediate.dense.weight"],
               "w2": w["output.dense.weight"], "ln": ln, "activation": config.activation, "cdf": cdf,
               "out_mask": out_mask}


def ffn_backward(dy: np.ndarray, cache: Cache) -> tuple[np.ndarray, Grads]:
    """Backward of ffn_forward."""
    dsum, dg, db = layer_norm_backward(dy, cache["ln"])
    out_mask = cache.get("out_mask")
    dinter, dw2, db2 = linear_backward(dsum if out_mask is None else dsum * out_mask, cache["inter"],
                                       cache["w2"])  # [B, n, I]
    dpre = activation_backward(dinter, cache["pre"], cache["activation"], cache["cdf"])
    dx, dw1, db1 = linear_backward(dpre, cache["x"], cache["w1"])  # [B, n, d]
    grads = {
        "intermediate.dense.weight": dw1, "intermediate.dense.bias": db1,
        "output.dense.weight": dw2, "output.dense.bias": db2,
        "output.LayerNorm.weight": dg, "output.LayerNorm.bias": db,
    }
    return dx + dsum, grads  # residual


# ---------------------------------------------------------------------------------------
# Head: [CLS] or masked mean, then a linear classifier / regressor (no tanh pooler)
# ---------------------------------------------------------------------------------------


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """[CLS] hidden state (BERT) or the masked mean over real tokens (sentence-transformers)."""
    if pooling == "cls":
        return hidden[:, 0]  # [B, d]
    m = mask[:, :, None].astype(hidden.dtype)  # [B, n, 1]
    return (hidden * m).sum(axis=1) / m.sum(axis=1)  # [B, d]


def pool_backward(dpooled: np.ndarray, hidden_shape: tuple[int, ...], mask: np.ndarray, pooling: str) -> np.ndarray:
    """Gradient of pool with respect to the hidden states [B, n, d]."""
    if pooling == "cls":
        dh = np.zeros(hidden_shape, dpooled.dtype)
        dh[:, 0] = dpooled
        return dh
    m = mask[:, :, None].astype(dpooled.dtype)  # [B, n, 1]
    return dpooled[:, None, :] * m / m.sum(axis=1, keepdims=True)  # [B, n, d]
