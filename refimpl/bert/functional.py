"""Plaintext definitions of every attention variant and activation (the reference).

These are the functions that `refimpl.aby3` and `refimpl.nexus` compare against
(DESIGN.md section 5). They are pure numpy, keep the dtype of their input (float64 in,
float64 out; float32 in, float32 out: every constant is a Python float, so no numpy
float64 scalar promotes a float32 array), and never loop in Python over elements.

Attention variants on scores s = Q K^T / sqrt(d) with a 0/1 key mask m and
n = sum(m) real keys (public):

    softmax          exp(s - max) m / sum(exp(s - max) m)     (additive mask before exp)
    2quad            (s + c)^2 m / sum((s + c)^2 m)          MPCFormer, c = 5
    2relu            ReLU(s) m / sum(ReLU(s) m)              MPCFormer
    scaling          s m / n                                 MPCFormer
    softmax-freediv  exp(s - max) m / f(n), f(n) = a n^b     freeDiv, attention replacement
    2quad-freediv    (s + c)^2 m / f(n),  f(n) = a n^b       freeDiv, attention replacement

("freeDiv" cites Liu Weixin et al. 2024, section "MPC-friendly function replacement",
attention part: the row sum is replaced by the public fit f(n) of its mean.)

softmax-freediv keeps softmax's shift by the row max (over real keys) and drops only the
division: f(n) is fitted to the mean of sum exp(s - max), which lies in [1, n] (the paper's
f(1) = a = 0.99 is that sum's value 1 at n = 1). Unshifted, exp(s) / f(n) is off by the
factor exp(max): MiniLM's row maxima run from 1 to 38 (SST-2 dev), and a student built that
way does not train (SST-2 51 % fine-tuned, 69 % distilled).

Every variant but softmax applies m multiplicatively after its elementwise function: an
additive -10000 would explode under (s + c)^2.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from refimpl.constants import C

VARIANTS = ("softmax", "2quad", "2relu", "scaling", "softmax-freediv", "2quad-freediv")
ACTIVATIONS = ("gelu", "gelu_poly4", "quad", "relu")

QUAD_C = float(C["freediv"]["quad_c"])  # c of 2Quad, (s + c)^2
FREEDIV = {  # f(n) = a n^b per variant, the paper's fit on BERT-base-cased
    "softmax-freediv": (float(C["freediv"]["softmax"]["a"]), float(C["freediv"]["softmax"]["b"])),
    "2quad-freediv": (float(C["freediv"]["quad2"]["a"]), float(C["freediv"]["quad2"]["b"])),
}
QUAD = tuple(float(q) for q in C["activations"]["quad"])  # coefficients of x^0, x^1, x^2
GELU_BREAKPOINTS = tuple(float(t) for t in C["nexus"]["gelu"]["breakpoints"])  # -4, -1.95, 3
GELU_P = tuple(float(p) for p in C["nexus"]["gelu"]["P"])  # x^0..x^3 on (-4, -1.95]
GELU_Q = tuple(float(q) for q in C["nexus"]["gelu"]["Q"])  # x^0..x^6 on (-1.95, 3]


def horner(x: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """Polynomial sum_k coeffs[k] x^k by Horner's rule (no x**k: DESIGN.md section 6)."""
    if len(coeffs) == 1:
        return np.full_like(x, coeffs[0])
    y = x * coeffs[-1] + coeffs[-2]  # one new array, then in place
    for c in reversed(coeffs[:-2]):  # loop over the degree, not over elements
        y *= x
        y += c
    return y


# ---------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------


def freediv_denominator(n: np.ndarray, a: float, b: float) -> np.ndarray:
    """f(n) = a n^b, the public fitted attention denominator (freeDiv, attention replacement)."""
    return a * n**b


def key_mask(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The key mask as [..., 1, n_k] in the scores' dtype; refuses an ambiguous [B, n_k] for [B, h, n_q, n_k]."""
    mask = np.asarray(mask)
    if mask.ndim > 1 and mask.ndim != scores.ndim - 1:
        raise ValueError(
            f"mask of shape {mask.shape} for scores of shape {scores.shape}: give [n_k] or one axis per "
            f"leading axis of the scores (e.g. mask[:, None, :] of shape [batch, 1, n_k] for "
            f"[batch, heads, n_q, n_k])"
        )
    return mask[..., None, :].astype(scores.dtype)


def attention_probs(
    scores: np.ndarray,
    mask: np.ndarray,
    variant: str,
    *,
    c: float = QUAD_C,
    a: float | None = None,
    b: float | None = None,
) -> np.ndarray:
    """Attention probabilities of `variant` from masked scores (freeDiv attention replacement; MPCFormer).

    Args:
        scores: [..., n_q, n_k] float, s = Q K^T / sqrt(d_head).
        mask: [..., n_k] 0/1 key mask; its leading axes broadcast against scores.shape[:-2]
            (e.g. [batch, 1, n_k] for scores [batch, heads, n_q, n_k]). Every row needs n >= 1.
        variant: one of VARIANTS.
        c: the shift of 2Quad, (s + c)^2 (spec constant freediv.quad_c = 5).
        a, b: f(n) = a n^b of the freeDiv variants; default: refimpl/constants.toml
            (freediv.softmax, freediv.quad2), the paper's fit.
    Returns:
        [..., n_q, n_k] probabilities, exactly 0 on masked keys.

    Reference: freeDiv, attention replacement (f(n) = a n^b); MPCFormer (2Quad, 2ReLU, Scaling);
    DESIGN.md section 5.
    """
    m = key_mask(scores, mask)  # [..., 1, n_k]
    if variant == "softmax":
        masked = np.where(m > 0, scores, -np.inf)  # additive mask: -inf before exp
        row_max = masked.max(axis=-1, keepdims=True)  # [..., n_q, 1]
        e = np.exp(masked - row_max)  # [..., n_q, n_k], 0 on masked keys
        return e / e.sum(axis=-1, keepdims=True)
    if variant == "2quad":
        u = scores + c
        num = u * u * m  # [..., n_q, n_k]
        return num / num.sum(axis=-1, keepdims=True)
    if variant == "2relu":
        num = np.maximum(scores, 0.0) * m  # [..., n_q, n_k]
        den = num.sum(axis=-1, keepdims=True)  # [..., n_q, 1]
        return num / np.where(den > 0, den, 1.0)  # a row with no positive score gives zeros
    n = m.sum(axis=-1, keepdims=True)  # [..., 1, 1] real keys, public
    if variant == "scaling":
        return scores * m / n
    if variant in FREEDIV:
        a0, b0 = FREEDIV[variant]
        f = freediv_denominator(n, a0 if a is None else float(a), b0 if b is None else float(b))
        if variant == "softmax-freediv":
            masked = np.where(m > 0, scores, -np.inf)
            return np.exp(masked - masked.max(axis=-1, keepdims=True)) / f  # 0 on masked keys
        u = scores + c
        return u * u * m / f
    raise ValueError(f"unknown attention variant {variant!r}; expected one of {VARIANTS}")


# ---------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------

# Cephes ndtr.c (S. L. Moshier, public domain) rational approximations of erf and erfc,
# the ones scipy.special.erf compiles; relative error ~1e-16 in float64.
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (1.0, 3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.0, 1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)
# (Cephes' third piece, erfc for |x| >= 8, is below 1e-28: erf is +-1 there in float64.)


def _polevl(x: np.ndarray, coeffs_high_first: tuple[float, ...]) -> np.ndarray:
    """Cephes polevl: polynomial with coefficients from the highest power down."""
    return horner(x, coeffs_high_first[::-1])


BLOCK = 65536  # elements per block: a chain of elementwise passes then stays in the L2 cache


def blockwise(fn: Callable[..., np.ndarray], *arrays: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """fn applied to same-shape arrays block by block (same result; erf runs 1.6x faster here)."""
    x = np.asarray(arrays[0])
    if x.size <= block:
        return fn(*arrays)
    flats = [np.asarray(a).reshape(-1) for a in arrays]
    first = fn(*(f[:block] for f in flats))
    out = np.empty(x.size, first.dtype)
    out[:block] = first
    for start in range(block, x.size, block):  # blocks, not elements
        out[start: start + block] = fn(*(f[start: start + block] for f in flats))
    return out.reshape(x.shape)


def erf(x: np.ndarray) -> np.ndarray:
    """Error function (numpy has none): Cephes ndtr.c, x T(x^2)/U(x^2) on |x| <= 1, else 1 - e^{-x^2} P/Q."""
    return blockwise(erf_block, np.asarray(x))


def erf_block(x: np.ndarray) -> np.ndarray:
    """erf of one block (see erf)."""
    z = x * x
    small = x * _polevl(z, _ERF_T) / _polevl(z, _ERF_U)  # |x| <= 1
    a8 = np.minimum(np.abs(x), 8.0)  # beyond 8, e^{-x^2} P/Q < 1e-28: erf = +-1 exactly
    large = 1.0 - np.exp(-z) * _polevl(a8, _ERFC_P) / _polevl(a8, _ERFC_Q)  # 1 < |x|: erfc = e^{-x^2} P/Q
    return np.where(np.abs(x) <= 1.0, small, np.copysign(large, x))


_SQRT_HALF = math.sqrt(0.5)  # Python float: keeps float32 arrays float32


def gelu_erf(x: np.ndarray) -> np.ndarray:
    """GELU(x) = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, exact (Hendrycks and Gimpel; BERT)."""
    return 0.5 * x * (1.0 + erf(x * _SQRT_HALF))



def gelu_poly4(x: np.ndarray) -> np.ndarray:
    """NEXUS 4-piece GELU: 0 (x <= -4), P(x) on (-4, -1.95], Q(x) on (-1.95, 3], x (x > 3), NEXUS §3.3."""
    t0, t1, t2 = GELU_BREAKPOINTS
    return np.where(
        x <= t0,
        0.0,
        np.where(x <= t1, horner(x, GELU_P), np.where(x <= t2, horner(x, GELU_Q), x)),
    ).astype(x.dtype, copy=False)


def quad(x: np.ndarray) -> np.ndarray:
    """Quad(x) = 0.125 x^2 + 0.25 x + 0.5, the GELU replacement of MPCFormer (training code)."""
    return horner(x, QUAD)


def relu(x: np.ndarray) -> np.ndarray:
    """ReLU(x) = max(x, 0) (MPCFormer's 2ReLU and the ReLU activation)."""
    return np.maximum(x, 0.0).astype(x.dtype, copy=False)


_ACTIVATION_FNS = {"gelu": gelu_erf, "gelu_poly4": gelu_poly4, "quad": quad, "relu": relu}


def activation(x: np.ndarray, name: str) -> np.ndarray:
    """The FFN activation `name` in ACTIVATIONS (BERT: gelu; MPCFormer/freeDiv: quad; NEXUS: gelu_poly4)."""
    try:
        fn = _ACTIVATION_FNS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}") from None
    return fn(x)


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """LayerNorm over the last axis: (x - mean) / sqrt(var + eps) gamma + beta (Ba et al.; BERT)."""
    mean = x.mean(axis=-1, keepdims=True)  # [..., 1]
    xc = x - mean
    var = (xc * xc).mean(axis=-1, keepdims=True)  # [..., 1], biased as in BERT
    return xc / np.sqrt(var + eps) * gamma + beta
