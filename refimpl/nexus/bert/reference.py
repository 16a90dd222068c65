"""Float64 references of the encrypted BERT: the exact model and the encrypted circuit's approximations.

`plaintext_reference` runs every layer in float64, either exactly (refimpl.bert.model.forward,
the one plaintext BERT forward) or with the approximations the encrypted forward computes
(QuickMax/exp/Goldschmidt Softmax in the encrypted key order, the 4-piece GELU with the Sgn
polynomial, LayerNorm's 1/sqrt by Newton and Goldschmidt), and records the ranges calibration
reads. `softmax_model`, `layernorm_model`, `gelu_model` and `argmax_reference` are the float64
models of single blocks.

Reference: NEXUS (Zhang et al., NDSS 2025) §3 (blocks), §3.4 (Argmax); BERT (Devlin et al. 2019).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ...bert import functional as F
from ...bert.model import forward
from ..folding import quick_max_plain, quick_sum_plain
from ..gelu import BREAKPOINTS, P as GP, Q as GQ, gelu_plain
from ..layernorm import GOLDSCHMIDT, rsqrt_plain
from ..sign import sgn_plain
from ..softmax import EXP_R, exp_plain, goldschmidt_iterations, inverse_plain
from .layout import LOGIT_BOUND, client_embed, pow2

if TYPE_CHECKING:  # annotation only: ranges imports this module (calibrate runs the reference)
    from .ranges import NexusModel


def gelu_model(x: np.ndarray, prescale: float) -> np.ndarray:
    """The float64 model of the 4-piece GELU with segment bits Sgn((x - t)/prescale)/2 (NEXUS §3.3)."""
    if prescale == 16.0:
        return gelu_plain(x)
    b = [sgn_plain((x - t) / prescale, 0.5) for t in BREAKPOINTS]
    pv, qv = np.polynomial.polynomial.polyval(x, GP), np.polynomial.polynomial.polyval(x, GQ)
    return pv * (b[0] - b[1]) + qv * (b[1] - b[2]) + x * (b[2] + 0.5)



def softmax_model(s: np.ndarray, key: np.ndarray, n_pad: int, B: float, r: int = EXP_R,
                  paired: bool = False) -> np.ndarray:
    """The float64 model of `softmax_pieces`: rows in the encrypted key order (i + r) mod n_pad,
    the same QuickMax (Sgn polynomial), exp, Goldschmidt inverse. s [h, n, n], key [n_pad] -> [h, n, n].
    paired: the model of `Forward.softmax_paired` (ours): the folds without the row duplication, the
    maximum and the sum read from the row's first slot."""
    h, n, _ = s.shape
    order = (np.arange(n)[:, None] + np.arange(n_pad)[None, :]) % n_pad  # [n, n_pad] key of entry r
    sp = np.zeros((h, n, n_pad))
    sp[:, :, :n] = s
    km = key[order]  # [n, n_pad]
    vals = np.take_along_axis(sp, np.broadcast_to(order, (h, n, n_pad)), axis=2) * km  # masked entries 0
    rows = np.zeros((h * n, 2 * n_pad))
    rows[:, :n_pad] = vals.reshape(h * n, n_pad)
    kmr = np.zeros_like(rows)
    kmr[:, :n_pad] = np.broadcast_to(km, (h, n, n_pad)).reshape(h * n, n_pad)
    rmask = np.zeros_like(rows)
    rmask[:, :n_pad] = 1.0
    flat = rows.ravel()
    m = quick_max_plain(flat - B * (rmask - kmr).ravel(), n_pad, B, duplicate=not paired)
    if paired:  # the first slot of each row, spread over it (the fold reads only the row there)
        m = np.repeat(m.reshape(h * n, 2 * n_pad)[:, :1], 2 * n_pad, axis=1).ravel()
    e = exp_plain(flat - m, r) * kmr.ravel()
    tot = quick_sum_plain(e, n_pad, duplicate=not paired)
    if paired:
        tot = np.repeat(tot.reshape(h * n, 2 * n_pad)[:, :1], 2 * n_pad, axis=1).ravel()
    p = (e * inverse_plain(tot, 0.5, float(n_pad), goldschmidt_iterations(0.5, float(n_pad)))).reshape(h * n, 2 * n_pad)
    pr = p[:, :n_pad].reshape(h, n, n_pad)
    out = np.zeros((h, n, n_pad))
    np.put_along_axis(out, np.broadcast_to(order, (h, n, n_pad)), pr, axis=2)
    return out[:, :, :n]


def layernorm_model(x: np.ndarray, gamma, beta, alpha: float, lo: float, hi: float, newton: int) -> np.ndarray:
    """The float64 model of `Forward.layernorm`: exact mean and variance, the 1/sqrt approximation."""
    xc = alpha * (x - x.mean(axis=-1, keepdims=True))
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return xc * gamma * rsqrt_plain(var, lo, hi, newton, GOLDSCHMIDT) + beta


def plaintext_reference(model: NexusModel, input_ids, attention_mask, *, approximate: bool) -> dict:
    """Float64 forward with per-layer activations: the encrypted computation's approximations
    (approximate=True: QuickMax/exp/Goldschmidt Softmax in the encrypted key order, the
    4-piece GELU with the Sgn polynomial, LayerNorm's 1/sqrt by Newton + Goldschmidt) or the
    exact model (approximate=False: refimpl.bert.model.forward itself, the one plaintext BERT).

    model: a refimpl.nexus.bert.ranges.NexusModel (approximate=True reads its settings).
    Returns {"hidden": [n, d] per layer (embeddings first), "probs": [h, n, n] per layer,
    "logits": [num_labels], "record": per-block ranges (scores, variances, activation inputs)}."""
    if not approximate:
        return _exact_reference(model, input_ids, attention_mask)
    cfg = model.config
    mask = np.asarray(attention_mask, dtype=np.float64).reshape(-1)
    x = client_embed(cfg, model.params, input_ids, mask)  # [n, d]
    n, d = x.shape
    h, dh = cfg.num_attention_heads, cfg.head_dim
    n_pad = max(2, pow2(n))
    key = np.zeros(n_pad)
    key[:n] = mask
    st = model.settings()
    rec = _new_record()
    hidden, probs_all = [x], []

    def add_norm(p, j, y, resid, pre):
        """LayerNorm(y W + b + resid) of the sublayer `pre` ("attention.output." or "output."), 1/sqrt approximated."""
        s_ = y @ w[pre + "dense.weight"].T + w[pre + "dense.bias"] + resid
        _absmax(rec, p + "sum" + j, s_)
        _var(rec, p + "ln" + j, s_)
        return layernorm_model(s_, w[pre + "LayerNorm.weight"], w[pre + "LayerNorm.bias"], *st["ln"][p + "ln" + j])

    for i in range(cfg.num_hidden_layers):
        w, p = model.layer(i), f"L{i}."
        _absmax(rec, p + "x", x)
        q, k, v = (x @ w[f"attention.self.{m}.weight"].T + w[f"attention.self.{m}.bias"] for m in ("query", "key", "value"))
        qh, kh, vh = (a.reshape(n, h, dh).transpose(1, 0, 2) for a in (q, k, v))  # [h, n, dh]
        s = qh @ kh.transpose(0, 2, 1) / math.sqrt(dh)  # [h, n, n]
        _scores(rec, s, mask)
        if cfg.attention == "softmax":
            probs = softmax_model(s, key, n_pad, st["B"], st["exp_r"])
        else:  # 2Quad-freeDiv has no approximation
            a_, b_ = cfg.freediv
            probs = F.attention_probs(s, mask, cfg.attention, c=cfg.quad_c, a=a_, b=b_)
        probs_all.append(probs)
        ctx = (probs @ vh).transpose(1, 0, 2).reshape(n, d)
        _absmax(rec, p + "ctx", ctx)
        h1 = add_norm(p, "1", ctx, x, "attention.output.")
        _absmax(rec, p + "h1", h1)
        u = h1 @ w["intermediate.dense.weight"].T + w["intermediate.dense.bias"]
        _act(rec, p, u)
        a = F.quad(u) if cfg.activation == "quad" else gelu_model(u, st["gelu_prescale"])
        _absmax(rec, p + "act_out", a)
        x = add_norm(p, "2", a, h1, "output.")
        hidden.append(x)
    _absmax(rec, f"L{cfg.num_hidden_layers}.x", x)
    logits = model.w64["classifier.weight"] @ x[0] + model.w64["classifier.bias"]
    return {"hidden": hidden, "probs": probs_all, "logits": logits, "record": rec}


def _exact_reference(model: NexusModel, input_ids, attention_mask) -> dict:
    """plaintext_reference(approximate=False): refimpl.bert.model.forward on the float64 weights, and the
    ranges recorded from its intermediate values (the sums before each LayerNorm recomputed from them)."""
    cfg = model.config
    mask = np.asarray(attention_mask, dtype=np.float64).reshape(-1)
    client_embed(cfg, model.params, input_ids, mask)  # the client's checks of the token ids
    fw = forward(model.w64, cfg, np.asarray(input_ids).reshape(1, -1), attention_mask=mask[None])
    rec = _new_record()
    for i, (att, ffn) in enumerate(fw.cache["layers"]):
        w, p = model.layer(i), f"L{i}."
        x, ctx, h1 = fw.hidden_states[i][0], att["ctx"][0], ffn["x"][0]
        _absmax(rec, p + "x", x)
        _scores(rec, fw.attention_scores[i][0], mask)
        _absmax(rec, p + "ctx", ctx)
        s1 = ctx @ w["attention.output.dense.weight"].T + w["attention.output.dense.bias"] + x
        _absmax(rec, p + "sum1", s1)
        _var(rec, p + "ln1", s1)
        _absmax(rec, p + "h1", h1)
        _act(rec, p, ffn["pre"][0])
        _absmax(rec, p + "act_out", ffn["inter"][0])
        s2 = ffn["inter"][0] @ w["output.dense.weight"].T + w["output.dense.bias"] + h1
        _absmax(rec, p + "sum2", s2)
        _var(rec, p + "ln2", s2)
    _absmax(rec, f"L{cfg.num_hidden_layers}.x", fw.hidden_states[-1][0])
    return {"hidden": [hs[0] for hs in fw.hidden_states], "probs": [pr[0] for pr in fw.attention_probs],
            "logits": fw.logits[0], "record": rec}


def _new_record() -> dict:
    return {"score_absmax": 0.0, "var": {}, "act": [np.inf, -np.inf], "absmax": {}}


def _absmax(rec: dict, name: str, a: np.ndarray) -> None:
    rec["absmax"][name] = max(rec["absmax"].get(name, 0.0), float(np.max(np.abs(a))))


def _scores(rec: dict, s: np.ndarray, mask: np.ndarray) -> None:
    """The largest |score| over the real keys, [h, n, n] scores."""
    rec["score_absmax"] = max(rec["score_absmax"], float(np.max(np.abs(s[:, :, mask > 0]))))


def _act(rec: dict, p: str, u: np.ndarray) -> None:
    """The activation's input range and max |input|."""
    rec["act"] = [min(rec["act"][0], float(u.min())), max(rec["act"][1], float(u.max()))]
    _absmax(rec, p + "act_in", u)


def _var(rec: dict, name: str, x: np.ndarray) -> None:
    v = x.var(axis=-1)
    lo, hi = rec["var"].get(name, (np.inf, -np.inf))
    rec["var"][name] = (min(lo, float(v.min())), max(hi, float(v.max())))


def argmax_reference(logits: np.ndarray, num_labels: int) -> np.ndarray:
    """The float64 model of the encrypted Argmax on a logit vector (NEXUS §3.4)."""
    Lp = max(2, pow2(num_labels))
    row = np.zeros(2 * Lp)
    row[:num_labels] = logits
    km = np.zeros(2 * Lp)
    km[:num_labels] = 1.0
    rmask = np.zeros(2 * Lp)
    rmask[:Lp] = 1.0
    xa = row - LOGIT_BOUND * (rmask - km)
    m = quick_max_plain(xa, Lp, LOGIT_BOUND, duplicate=True)
    return (1.0 + sgn_plain((xa - m) / (2 * LOGIT_BOUND)))[:num_labels]
