"""Encrypted BERT under NEXUS: the server's forward pass on CKKS ciphertexts, with real bootstrapping.

    client: x = LayerNorm(word[ids] + position + type)  [n, d], packed and encrypted
    server, per layer:  Q, K, V = x W^T + b (ct-pt);  S = Q K^T / sqrt(dh) (ct-ct);
                        P = Softmax(S) (QuickMax, exp, QuickSum, Goldschmidt)  or  (S + c)^2 m / f(n);
                        x = LN(x + (P V) W_O^T + b_O);  x = LN(x + act(x W_1^T + b_1) W_2^T + b_2)
                        (act = the 4-piece GELU, or Quad);  logits = W_C x[CLS] + b_C;  optional Argmax.

Layout (token-major windows). A matrix [n, F] is cut into chunks of P features (P a power of
two); chunk c is one ciphertext whose slot t w + j holds X[t, c P + j], window w = 2P, for the
n tokens t < n_pad (n_pad = the power of two >= n, n_pad w <= N/2). The second half of every
window is zero, so x + RotR(x, P) makes each window cyclic (NEXUS's row duplication, Alg. 7).
Windows t >= n are inactive: every plaintext (diagonals, biases, gamma, beta, masks) is zero
there, so they hold only noise.
  - ct-pt products: the diagonal method per P x P block with baby-step giant-step (Halevi and
    Shoup 2014; the hoisted rotations of the duplicated input are shared by all output chunks):
    (g - 1) + (P/g - 1) rotations and P plaintext products per block, 1 level.
  - Q K^T: for each key shift r < n_pad, Q * RotL(K, r w) (the keys rotated by whole token
    windows, hoisted), QuickSum over each head's dh slots, a one-hot mask (with 1/sqrt(dh)),
    RotR by r: row (i, h) of S sits in slots i w + h dh + r, keys in the order (i + r) mod n_pad.
    n_pad products, 2 levels. Rows of n_pad keys in windows of dh slots, so dh >= 2 n_pad
    (Softmax: duplication) or dh >= n_pad (2Quad).
  - P V: for each r, mask column r of P (the key mask / f(n) of 2Quad-freeDiv folded in), RotL by
    r and broadcast over the head's dh slots (log2 dh rotations), times RotL(V, r w). 2 levels.
  - Softmax, LayerNorm, GELU: the blocks of refimpl.nexus (QuickMax rounds by max_pair, exp,
    Goldschmidt inverse, Newton + Goldschmidt 1/sqrt, the 4-piece GELU with its feature mask
    folded into the scale-aligning products), LayerNorm summing the chunks before its QuickSum.
  - Quad = 0.125 x^2 + 0.25 x + 0.5 in one level: sqrt(0.125) is folded into W_1 and b_1.
  - The activation's output is carried divided by M = act_div (folded into the GELU mask or into
    W_1 for Quad, undone by W_2 x M), so that it can be refreshed at level 0 without scaling.

Bootstrapping: the forward is a chain of pieces (qkv, qk, QuickMax rounds, exp, inverse, ...,
LayerNorm in four pieces, FFN, activation) with level costs, widths (ciphertexts alive) and
joins (the residual, x - max, e / sum); `plan` places the bootstraps so that the fewest
ciphertexts are refreshed (dynamic programming over levels; e.g. the one-ciphertext variance
inside LayerNorm rather than its d features, the hidden stream rather than the 4x wider FFN
stream) and the forward follows the plan, checking the level after every piece. Values are
scaled into [-1, 1] before a bootstrap when a level is left (EvalMod is accurate for slot
values of size about 1) and scaled back by an integer product afterwards (no level, the scale
stays near the primes); an unscaled refresh at level 0 only for |x| <= 4 or where EvalMod's
coarse error is harmless (QuickMax's running maximum, a - max before exp).

Ranges: the approximations have valid input ranges (Softmax: 2B <= 2^r, r = 6, or 7 when the
scores need it, the official code's r; GELU: [-13, 12] with the paper's Sgn((x - t)/16),
[-29, 28] with /32; 1/sqrt: the variance range, 4 to 8 Newton steps). The server cannot look at
the data, so a NexusModel carries ranges calibrated on plaintext inputs (`calibrate`), with
margins; `check_ranges` raises when a plaintext reference leaves them.

This module is longer than ~400 lines because layout, plan and forward must agree piece by
piece and read best side by side.

Reference: NEXUS (Zhang et al., NDSS 2025) §3 (blocks), §4 (system), Alg. 5-7; BERT (Devlin et
al. 2019); freeDiv (Liu Weixin et al. 2024) 2Quad-freeDiv attention; MPCFormer (Quad).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..bert import functional as F
from ..bert.config import BertConfig
from ..ckks import Ciphertext, Parameters
from .folding import duplicate_rows, max_pair, quick_sum, round_levels
from .gelu import LEVELS as GELU_LEVELS, gelu_plain
from .layernorm import NEWTON, GOLDSCHMIDT, _mul, rsqrt_plain, valid as rsqrt_valid
from .levels import align, with_scale
from .sign import sgn, sgn_levels, sgn_plain
from .softmax import EXP_R, exp, exp_plain, goldschmidt_iterations, inverse, inverse_levels, inverse_plain

SCORE_MARGIN = 1.25  # calibrated |score| max times this is the Softmax bound B
VAR_MARGIN = 1.5  # calibrated variance range widened by this factor on both sides
GELU_MARGIN = 1.1  # calibrated GELU input range widened by this factor
MAX_NEWTON = 12  # Newton steps of 1/sqrt for wide variance ranges (MiniLM's second LayerNorms: ratios ~1000-11000)
NEWTON_PER_PIECE = 8  # more Newton steps than this go in two pieces, with a possible refresh between them
GELU_PRESCALES = (16.0, 32.0)  # the paper's Sgn((x - t)/16); /32 doubles the valid range (blend zone 0.28 -> 0.56)
LOGIT_BOUND = 8.0  # Argmax: logits assumed in [-8, 8]
UNSCALED_BOOT_BOUND = 4.0  # a refresh at level 0 (no level for the scaling) only for |values| <= 4:
# EvalMod's relative error (2 pi Delta x / q_0)^2 / 6 is 1e-4 at |x| = 16, 6e-6 at 4 (Delta / q_0 = 2^-12);
# exceptions: the running maximum of QuickMax (Softmax subtracts it: an error of 1e-3 B only shifts the row)
# and a - max before exp (the error is cubic in |a - max|, where exp is below 1e-8) or before Argmax's Sgn
QUAD_ROOT = math.sqrt(F.QUAD[2])  # sqrt(0.125), folded into W_1 for the one-level Quad
CALIBRATION_SEED = 0


def _pow2(x: int) -> int:
    return 1 << max(int(x) - 1, 0).bit_length()


# ============================================================================ layout
@dataclass(frozen=True)
class Layout:
    """Token-major windows: slot t w + j of chunk c holds X[t, c P + j], w = 2P, t < n_pad."""

    n: int  # tokens (active windows)
    n_pad: int  # rows of attention: the power of two >= n
    chunk: int  # P features per ciphertext
    slots: int
    d: int
    heads: int
    head_dim: int
    intermediate: int
    num_labels: int
    head_rows: bool = False  # one score ciphertext per head, rows at the start of each window (n > dh / 2)

    @property
    def window(self) -> int:
        return 2 * self.chunk

    @property
    def score_cts(self) -> int:
        """Ciphertexts of the score stream S (and P): one per chunk, or one per head with head_rows."""
        return self.heads if self.head_rows else self.chunks(self.d)

    @property
    def row_segment(self) -> int:
        """Slots of the segment a score row starts in: the head's dh slots, or the whole window with head_rows."""
        return self.window if self.head_rows else self.head_dim

    @property
    def baby(self) -> int:
        """g = 2^ceil(log2(P)/2): baby steps of the BSGS diagonal method."""
        return 1 << -(-(self.chunk.bit_length() - 1) // 2)

    def chunks(self, features: int) -> int:
        return -(-features // self.chunk)

    @property
    def label_pad(self) -> int:
        return max(2, _pow2(self.num_labels))


def input_layout(config: BertConfig, n: int, slots: int, *, head_rows: bool = False) -> Layout:
    """The packing of [n, d] (and of every activation) for N/2 = `slots` (NEXUS §3, token-major windows).

    head_rows=True: the attention rows of n_pad keys (2 n_pad with Softmax's duplication) may be
    longer than a head's dh slots; the scores of each head then get their own ciphertext, row
    (t, h) in the window of token t from its first slot (needs the window 2P >= the row). Used for
    BERT-base at n = 128 (refimpl.nexus.bertbase); the default keeps rows inside the head's segment."""
    d, h, dh = config.hidden_size, config.num_attention_heads, config.head_dim
    if n < 1:
        raise ValueError(f"need at least one token, got n = {n}")
    if dh & (dh - 1):
        raise ValueError(f"head dimension {dh} is not a power of two: heads cannot align with the chunks")
    n_pad = max(2, _pow2(n))
    rows = 2 * n_pad if config.attention == "softmax" else n_pad
    if rows > dh and not head_rows:
        raise ValueError(
            f"{n} tokens: attention rows of {n_pad} keys need {rows} slots per head (Softmax duplicates the row), "
            f"the head dimension is {dh}: use at most {dh // (2 if config.attention == 'softmax' else 1)} tokens")
    if config.attention not in ("softmax", "2quad-freediv"):
        raise ValueError(f"encrypted attention supports 'softmax' and '2quad-freediv', not {config.attention!r}")
    if config.activation not in ("gelu", "gelu_poly4", "quad"):
        raise ValueError(f"encrypted FFN supports GELU (4-piece) and Quad, not {config.activation!r}")
    if config.pooling != "cls":
        raise ValueError("the encrypted head reads the [CLS] token (pooling 'cls')")
    P = min(_pow2(d), slots // (2 * n_pad))
    if P < dh:
        raise ValueError(f"{slots} slots hold {n_pad} token windows of only {2 * P} slots; a head needs {dh}: "
                         f"use a larger ring or fewer tokens")
    if head_rows and rows > 2 * P:
        raise ValueError(f"{n} tokens: attention rows need {rows} slots, the token windows of {slots} slots have "
                         f"{2 * P}: use a larger ring or fewer tokens")
    return Layout(n, n_pad, P, slots, d, h, dh, config.intermediate_size, config.num_labels, head_rows and rows > dh)


def pack_input(x: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """[n, d] -> one slot vector per chunk of P features (slot t w + j = x[t, c P + j]); what the client encrypts."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (layout.n, layout.d):
        raise ValueError(f"input of shape {x.shape}, the layout is for [{layout.n}, {layout.d}]")
    return _pack(x, layout)


def _pack(x: np.ndarray, lay: Layout) -> list[np.ndarray]:
    n, F_ = x.shape
    P, w = lay.chunk, lay.window
    out = []
    for c in range(lay.chunks(F_)):
        v = np.zeros((lay.slots // w, w))
        part = x[:, c * P:(c + 1) * P]
        v[:n, :part.shape[1]] = part
        out.append(v.ravel())
    return out


def _unpack(vectors, lay: Layout, F_: int) -> np.ndarray:
    """Inverse of _pack: [n, F] from the chunk slot vectors."""
    P, w = lay.chunk, lay.window
    cols = [np.asarray(v).real.reshape(-1, w)[: lay.n, :P] for v in vectors]
    return np.concatenate(cols, axis=1)[:, :F_]


def unpack_output(vectors, layout: Layout, num_labels: int) -> np.ndarray:
    """Logits from the decrypted output: slot l w of the first vector holds logit l."""
    v = np.asarray(vectors[0]).real
    return np.array([v[l * layout.window] for l in range(num_labels)])


def unpack_argmax(vectors, layout: Layout, num_labels: int) -> np.ndarray:
    """The Argmax selection vector (about 1 at the winner, 0 elsewhere): slots 0 .. num_labels - 1."""
    return np.asarray(vectors[0]).real[:num_labels]


# ============================================================================ client side
def client_embed(config: BertConfig, params: dict, input_ids, attention_mask=None) -> np.ndarray:
    """[n, d] float64: LayerNorm(word[ids] + position[0..n-1] + type[0]), computed by the client.

    The client holds the embedding table (NEXUS §4, as in its system model): a lookup on
    encrypted token ids would need a one-hot vector times a 30522-row table per token, and the
    table is not secret in the setting of a public pretrained model, while the token ids are.
    The embedding LayerNorm runs in the clear for the same reason (it sees only the client's
    data). attention_mask is public (n and the mask are known to the server)."""
    ids = np.asarray(input_ids).reshape(-1)
    if ids.size > config.max_position_embeddings:
        raise ValueError(f"{ids.size} tokens exceed max_position_embeddings {config.max_position_embeddings}")
    if ids.min() < 0 or ids.max() >= config.vocab_size:
        raise ValueError(f"token ids must lie in [0, {config.vocab_size}), got [{ids.min()}, {ids.max()}]")
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items() if k.startswith("embeddings.")}
    e = (p["embeddings.word_embeddings.weight"][ids] + p["embeddings.position_embeddings.weight"][: ids.size]
         + p["embeddings.token_type_embeddings.weight"][0])  # [n, d]
    return F.layer_norm(e, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], config.layer_norm_eps)


# ============================================================================ model and calibration
@dataclass
class NexusModel:
    """A BERT classifier prepared for CKKS (server side): plaintext weights, encoded lazily per level.

    ranges: calibrated per-block value ranges (see `calibrate`); computed on first use from
    synthetic token sequences of the vocabulary when not given."""

    config: BertConfig
    params: dict[str, np.ndarray]
    ranges: dict | None = None
    w64: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.w64 = {k: np.asarray(v, dtype=np.float64) for k, v in self.params.items()}
        if "classifier.weight" not in self.w64:
            raise ValueError("the encrypted forward needs a classifier head (classifier.weight)")

    def get_ranges(self) -> dict:
        if self.ranges is None:
            rng = np.random.default_rng(CALIBRATION_SEED)
            samples = [(rng.integers(1000 if self.config.vocab_size > 2000 else 1, self.config.vocab_size, size=n),
                        np.ones(n, dtype=np.int64)) for n in (4, 6, 8, 12, 16) for _ in range(2)]
            self.ranges = calibrate(self, samples)
        return self.ranges

    def settings(self) -> dict:
        """The approximations' parameters chosen from the ranges: B, LayerNorm (alpha, lo, hi, newton)."""
        r = self.get_ranges()
        B = r["score_bound"]
        act_max = max([v for k, v in r["absmax"].items() if k.endswith("act_out")] or [1.0])
        out = {"B": B, "exp_r": EXP_R if 2 * B <= 2.0**EXP_R else EXP_R + 1, "ln": {},
               "act_div": float(2.0 ** max(0, math.ceil(math.log2(act_max * SCORE_MARGIN)))),
               "gelu_prescale": gelu_prescale(r["act"]) or GELU_PRESCALES[-1]}
        for name, (vlo, vhi) in r["var"].items():
            lo, hi = vlo / VAR_MARGIN, vhi * VAR_MARGIN
            alpha = 1.0 / math.sqrt(hi)
            for newton in range(NEWTON, MAX_NEWTON + 1):  # in one or two pieces (_ln_pieces)
                if rsqrt_valid(lo * alpha**2, 1.0, newton, GOLDSCHMIDT) <= 2.0**-10:
                    break
            else:
                raise ValueError(f"{name}: variance range [{vlo:.3g}, {vhi:.3g}] is too wide for 1/sqrt "
                                 f"even with {newton} Newton steps")
            out["ln"][name] = (alpha, lo * alpha**2, 1.0, newton)
        return out


def calibrate(model: NexusModel, samples, margin: float = 1.0) -> dict:
    """Per-block ranges from the exact plaintext forward over `samples` [(ids, mask), ...] (model owner).

    Returns {"score_bound": B, "var": {ln name: (min, max)}, "act": (min, max), "absmax": {stream: max |x|}}
    and raises if the approximations cannot cover them (NEXUS §3: inputs must be normalised)."""
    acc = {"score": 0.0, "var": {}, "act": [np.inf, -np.inf], "absmax": {}}
    for ids, mask in samples:
        ref = plaintext_reference(model, ids, mask, approximate=False, _record=True)
        rec = ref["record"]
        acc["score"] = max(acc["score"], rec["score_absmax"])
        for k, (a, b) in rec["var"].items():
            lo, hi = acc["var"].get(k, (np.inf, -np.inf))
            acc["var"][k] = (min(lo, a), max(hi, b))
        acc["act"] = [min(acc["act"][0], rec["act"][0]), max(acc["act"][1], rec["act"][1])]
        for k, v in rec["absmax"].items():
            acc["absmax"][k] = max(acc["absmax"].get(k, 0.0), v)
    B = float(2.0 ** math.ceil(math.log2(max(acc["score"] * SCORE_MARGIN * margin, 1.0))))
    if 2 * B > 2.0 ** (EXP_R + 1) and model.config.attention == "softmax":
        raise ValueError(f"attention scores reach {acc['score']:.1f}: exp ~ (1 + x/2^r)^(2^r) is valid for x >= -2^r; "
                         f"refimpl allows r = {EXP_R} (NEXUS) or {EXP_R + 1} (the official code), i.e. B <= 64")
    act = (acc["act"][0] * GELU_MARGIN * margin, acc["act"][1] * GELU_MARGIN * margin)
    if model.config.activation != "quad" and gelu_prescale(act) is None:
        lo, hi = gelu_valid_range(GELU_PRESCALES[-1])
        raise ValueError(f"GELU inputs reach [{act[0]:.2f}, {act[1]:.2f}] (with margin), outside the valid range "
                         f"[{lo}, {hi}] of the 4-piece GELU with Sgn((x - t)/{GELU_PRESCALES[-1]:g})")
    return {"score_bound": B, "var": acc["var"], "act": tuple(act), "absmax": acc["absmax"]}


RANGES_FORMAT = "refimpl-nexus-ranges"
REFRESH_STREAMS = ("x", "ctx", "sum1", "h1", "sum2")  # streams refreshed with their calibrated max as the bound


def ranges_to_json(ranges: dict, source: str) -> dict:
    """Calibrated ranges (calibrate's dict) as a JSON document, with where they come from."""
    return {"format": RANGES_FORMAT, "source": source, "score_bound": float(ranges["score_bound"]),
            "var": {k: [float(a), float(b)] for k, (a, b) in ranges["var"].items()},
            "act": [float(v) for v in ranges["act"]], "absmax": {k: float(v) for k, v in ranges["absmax"].items()}}


def ranges_from_json(doc: dict, config: BertConfig) -> dict:
    """calibrate's dict from ranges_to_json's document, checked as calibrate checks its own result
    (ValueError naming what is wrong: format, a missing LayerNorm or stream, a range that is not finite
    or has lo > hi, a Softmax bound beyond exp's range, GELU inputs beyond every Sgn prescale)."""
    if not isinstance(doc, dict) or doc.get("format") != RANGES_FORMAT:
        raise ValueError(f"expected a JSON object with format {RANGES_FORMAT!r}, got "
                         f"{doc.get('format') if isinstance(doc, dict) else type(doc).__name__!r}")
    L = config.num_hidden_layers
    want = {f"L{i}.ln{j}" for i in range(L) for j in (1, 2)}
    streams = {f"L{i}.{k}" for i in range(L) for k in (*REFRESH_STREAMS, "act_in", "act_out")} | {f"L{L}.x"}
    try:
        var = {k: (float(a), float(b)) for k, (a, b) in doc["var"].items()}
        if len(doc["act"]) != 2:
            raise ValueError(f"act has {len(doc['act'])} values")
        out = {"score_bound": float(doc["score_bound"]), "var": var,
               "act": (float(doc["act"][0]), float(doc["act"][1])),
               "absmax": {k: float(v) for k, v in doc["absmax"].items()}}
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"ranges document: expected score_bound, var {{name: [lo, hi]}}, act [lo, hi] and "
                         f"absmax {{stream: max}}, got keys {sorted(doc)} ({e!r})") from None
    if set(var) != want:
        raise ValueError(f"ranges document: LayerNorm ranges {sorted(var)}, expected {sorted(want)} for a "
                         f"{L}-layer model")
    if set(out["absmax"]) != streams:
        raise ValueError(f"ranges document: stream maxima for {sorted(out['absmax'])}, expected {sorted(streams)}")
    bad = [k for k, v in out["absmax"].items() if not (math.isfinite(v) and v >= 0)]
    if bad or not (math.isfinite(out["score_bound"]) and out["score_bound"] > 0):
        raise ValueError(f"ranges document: score_bound = {out['score_bound']} must be > 0 and the stream maxima "
                         f"finite and >= 0 (not {bad})")
    for k, (a, b) in [("act", out["act"]), *var.items()]:
        if not (math.isfinite(a) and math.isfinite(b) and a <= b) or (k in var and a <= 0):
            raise ValueError(f"ranges document: {k} = [{a}, {b}] must be finite with lo <= hi"
                             + (" and lo > 0 (a variance)" if k in var else ""))
    if config.attention == "softmax" and 2 * out["score_bound"] > 2.0 ** (EXP_R + 1):
        raise ValueError(f"ranges document: score_bound = {out['score_bound']} > {2.0 ** EXP_R:g}, beyond exp's "
                         f"valid range (as calibrate refuses)")
    if config.activation != "quad" and gelu_prescale(out["act"]) is None:
        raise ValueError(f"ranges document: GELU inputs {out['act']} outside every Sgn prescale's valid range "
                         f"(as calibrate refuses)")
    return out


def gelu_valid_range(prescale: float) -> tuple[float, float]:
    """Inputs x with every (x - t_i)/prescale in [-1, 1]: [-13, 12] for the paper's 16."""
    from .gelu import BREAKPOINTS

    return (max(BREAKPOINTS) - prescale, min(BREAKPOINTS) + prescale)


def gelu_prescale(act_range) -> float | None:
    """The smallest Sgn prescale of GELU_PRESCALES whose valid range holds act_range (None if none does)."""
    for c in GELU_PRESCALES:
        lo, hi = gelu_valid_range(c)
        if lo <= act_range[0] and act_range[1] <= hi:
            return c
    return None


def gelu_model(x: np.ndarray, prescale: float) -> np.ndarray:
    """The float64 model of the 4-piece GELU with segment bits Sgn((x - t)/prescale)/2 (NEXUS §3.3)."""
    from .gelu import BREAKPOINTS, P as GP, Q as GQ

    if prescale == 16.0:
        return gelu_plain(x)
    b = [sgn_plain((x - t) / prescale, 0.5) for t in BREAKPOINTS]
    pv, qv = np.polynomial.polynomial.polyval(x, GP), np.polynomial.polynomial.polyval(x, GQ)
    return pv * (b[0] - b[1]) + qv * (b[1] - b[2]) + x * (b[2] + 0.5)


def check_ranges(model: NexusModel, ref: dict) -> None:
    """Raise if a plaintext reference's activations leave the model's calibrated ranges (ValueError naming the block)."""
    r, st = model.get_ranges(), model.settings()
    rec = ref["record"]
    if rec["score_absmax"] > r["score_bound"]:
        raise ValueError(f"attention scores reach {rec['score_absmax']:.2f} > the Softmax bound B = {r['score_bound']}")
    for k, (a, b) in rec["var"].items():
        alpha, lo, hi, _ = st["ln"][k]
        if a * alpha**2 < lo or b * alpha**2 > hi:
            raise ValueError(f"{k}: variance range [{a:.3g}, {b:.3g}] leaves the calibrated [{lo / alpha**2:.3g}, {hi / alpha**2:.3g}]")
    if model.config.activation != "quad":
        lo, hi = rec["act"]
        vlo, vhi = gelu_valid_range(st["gelu_prescale"])
        if lo < max(r["act"][0], vlo) - 1e-9 or hi > min(r["act"][1], vhi) + 1e-9:
            raise ValueError(f"GELU inputs [{lo:.2f}, {hi:.2f}] leave the calibrated {r['act']} / valid [{vlo}, {vhi}]")
    for k, v in rec["absmax"].items():  # a refresh scales a stream by 1/M, M the power of two over its bound
        if k.rsplit(".", 1)[-1] in REFRESH_STREAMS and k in r["absmax"]:
            M = 2.0 ** max(0, math.ceil(math.log2(max(r["absmax"][k], 1.0))))
            if v > M:
                raise ValueError(f"{k}: values reach {v:.3g} > {M:g}, the refresh bound over the calibrated "
                                 f"{r['absmax'][k]:.3g} (a bootstrap would leave EvalMod's accurate range)")


# ============================================================================ plan
@dataclass(frozen=True)
class Piece:
    """One step of the chain: `cost` levels on `width` ciphertexts; needs `need` levels on entry.

    join = (which, piece, offset): before the piece the stream meets another one whose level is
    the entry ("in") or exit ("out") level of `piece` minus offset (an addition: the result has
    the lower level; equal levels cost one level to match the scales); a bootstrap before the
    piece refreshes the joined value. bootable=False: no refresh allowed (a product of two streams)."""

    name: str
    cost: int
    width: int
    need: int | None = None
    join: tuple[str, str, int] | None = None
    bootable: bool = True
    bound: float = 1.0  # max |value| of the stream entering the piece (pre-bootstrap scaling)
    product_join: bool = False  # the join is a product (levels need not match scales: no extra level)
    coarse_ok: bool = False  # an unscaled refresh (EvalMod error ~1e-3 relative) is harmless: a running maximum
    bounds: tuple[float, ...] | None = None  # per ciphertext, when they hold different quantities (default: bound)


def _pieces(model: NexusModel, lay: Layout, argmax: bool = False) -> list[Piece]:
    cfg, st, r = model.config, model.settings(), model.get_ranges()
    ch, ci, sw = lay.chunks(lay.d), lay.chunks(lay.intermediate), lay.score_cts  # sw: the score stream's ciphertexts
    B = st["B"]
    am = r["absmax"]
    out = []
    for i in range(cfg.num_hidden_layers):
        p = f"L{i}."
        out.append(Piece(p + "qkv", 1, ch, need=3, bound=am.get(f"L{i}.x", 4.0)))
        out.append(Piece(p + "qk", 2, ch, bootable=False))
        if cfg.attention == "softmax":
            rounds = lay.n_pad.bit_length() - 1
            for k in range(rounds):
                out.append(Piece(p + f"softmax.round{k}", round_levels(B), sw, bound=B, coarse_ok=k > 0))
            k_inv = goldschmidt_iterations(0.5, float(lay.n_pad))
            out.append(Piece(p + "softmax.exp", st["exp_r"] + 1, sw, need=st["exp_r"] + 2,
                             join=("in", p + "softmax.round0", 0), bound=2 * B, coarse_ok=True))
            out.append(Piece(p + "softmax.inverse", inverse_levels(k_inv), sw, bound=float(lay.n_pad)))
            out.append(Piece(p + "softmax.normalize", 1, sw, join=("out", p + "softmax.exp", 0), bootable=False,
                             product_join=True))
        else:
            a = cfg.freediv[0]  # (s + c) / sqrt(f(n)) with f(n) >= f(1) = a
            out.append(Piece(p + "2quad", 1, sw, bound=(B + cfg.quad_c) / math.sqrt(a)))
        out.append(Piece(p + "pv.mask", 1, sw, need=2,
                         bound=1.0 if cfg.attention == "softmax" else (B + cfg.quad_c) ** 2 / cfg.freediv[0]))
        out.append(Piece(p + "pv.mul", 1, ch, join=("in", p + "qkv", 1), bootable=False, product_join=True))
        out.append(Piece(p + "out", 1, ch, bound=am.get(f"L{i}.ctx", 4.0)))
        out += _ln_pieces(p + "ln1", st["ln"][p + "ln1"], ch, lay.d, ("in", p + "qkv", 0), am.get(f"L{i}.sum1", 16.0))
        out.append(Piece(p + "ffn1", 1, ch, bound=am.get(f"L{i}.h1", 4.0)))
        if cfg.activation == "quad":
            out.append(Piece(p + "quad", 1, ci, bound=am.get(f"L{i}.act_in", 8.0) * QUAD_ROOT / math.sqrt(st["act_div"])))
        else:
            out.append(Piece(p + "gelu", GELU_LEVELS, ci, bound=max(abs(v) for v in gelu_valid_range(st["gelu_prescale"]))))
        out.append(Piece(p + "ffn2", 1, ci, bound=1.0))  # activation output / act_div
        out += _ln_pieces(p + "ln2", st["ln"][p + "ln2"], ch, lay.d, ("in", p + "ffn1", 0), am.get(f"L{i}.sum2", 16.0))
    out.append(Piece("head", 1, ch, bound=am.get(f"L{cfg.num_hidden_layers}.x", 4.0)))
    if argmax:
        out.append(Piece("argmax.compact", 1, 1, bound=LOGIT_BOUND))
        for k in range(lay.label_pad.bit_length() - 1):
            out.append(Piece(f"argmax.round{k}", round_levels(LOGIT_BOUND), 1, bound=LOGIT_BOUND, coarse_ok=k > 0))
        out.append(Piece("argmax.sgn", sgn_levels(2 * LOGIT_BOUND), 1, join=("in", "argmax.round0", 0),
                         bound=2 * LOGIT_BOUND, coarse_ok=True))
    return out


def _ln_pieces(name: str, ln: tuple, width: int, d: int, join: tuple, bound: float) -> list[Piece]:
    """LayerNorm as four pieces, so that a refresh may sit inside it (MiniLM's variance ranges need
    up to 7 Newton steps: 3 + 1 + 14 + 5 = 23 levels, more than a bootstrap returns):
    x + residual -> centred and squared sums (2) | guess + Newton (1 + 2 newton) on the variance |
    Goldschmidt (1 + 2 G) on (y, u) | gamma (x - mu) y + beta (1, a product with the centred stream)."""
    alpha, lo, hi, newton = ln
    first, rest = newton_split(newton)
    y_bound = max(1.0, 1.5 / math.sqrt(lo))
    return [Piece(name, 2, width, join=join, bound=bound),
            Piece(name + ".rsqrt", 1 + 2 * first, 1, bound=d * hi),
            # more than NEWTON_PER_PIECE steps: the rest continue on (y, -u/2), which a refresh may renew
            *([Piece(name + ".newton", 2 * rest, 2, bound=max(y_bound, hi / 2), bounds=(y_bound, hi / 2))]
              if rest else []),
            # (y, u) are refreshed with their own bounds: scaling u <= hi by y's bound 1.5 / sqrt(lo)
            # would leave it an absolute error of that bound times the bootstrap's (relative error
            # 30 % at u = lo with 20-bit bootstrapping: 0.08 on the logits of MiniLM's second LayerNorm)
            Piece(name + ".gold", 1 + 2 * GOLDSCHMIDT, 2, bound=max(y_bound, hi), bounds=(y_bound, hi)),
            Piece(name + ".out", 1, width, join=("in", name, 2), bootable=False, product_join=True)]


def _simulate(pieces: list[Piece], boots: set[int], start: int, top: int):
    """Levels along the chain for a set of bootstrap positions; (rows, index of the first failure or None)."""
    lin, lout, rows = {}, {}, []
    level = start
    for i, pc in enumerate(pieces):
        matched = False
        if pc.join:
            which, ref, off = pc.join
            other = (lin if which == "in" else lout)[ref] - off
            if other == level and not pc.product_join:
                level, matched = level - 1, True  # equal levels: one level to match the scales
            else:
                level = min(level, other)
        boot = i in boots
        if boot:
            level = top
        need = pc.cost if pc.need is None else pc.need
        if level < need:
            return rows, i
        lin[pc.name] = level
        rows.append({"block": pc.name, "bootstrap": boot, "level_in": level, "cost": pc.cost,
                     "level_out": level - pc.cost, "ciphertexts": pc.width,
                     "bootstraps": pc.width if boot else 0, "scale_match_level": matched})
        level -= pc.cost
        lout[pc.name] = level
    return rows, None


def place(pieces: list[Piece], start: int, top: int, *, limb_s: dict[str, float] | None = None,
          boot_s: float | None = None) -> list[dict]:
    """Bootstrap positions with the fewest ciphertexts refreshed (then the fewest refresh points).

    Dynamic programming over the chain: the state after a piece is its level and the levels of
    the streams still waiting to be joined (the residual, the scores before QuickMax, ...); at
    each bootable piece one may refresh its `width` ciphertexts. Exact for this cost, and never
    worse than the greedy rule of refimpl.ckks.bootstrap.planner (refresh right before the
    piece that does not fit), which ignores widths: e.g. it refreshes the 4x wider FFN stream
    where refreshing the hidden stream one piece earlier serves as well.

    Time-weighted (ours; both keywords): minimise the derived time instead, boot_s seconds per
    refreshed ciphertext plus limb_s[piece] x (level + 1) per piece (a piece's time taken as
    proportional to the limbs of the level it runs at; pieces not named cost nothing), counted in
    whole microseconds so that equal times tie exactly, then the two counts above. The state is
    the same, so the program stays exact for this cost."""
    if (limb_s is None) != (boot_s is None):
        raise ValueError("a time-weighted placement needs both limb_s (seconds per limb of each piece) and boot_s "
                         "(seconds per refreshed ciphertext)")
    if boot_s is not None:
        bad = {k: v for k, v in limb_s.items() if not v >= 0}  # NaN fails too
        if not boot_s >= 0 or bad:
            raise ValueError(f"seconds must be non-negative numbers, got boot_s = {boot_s}"
                             + (f" and limb_s {bad}" if bad else ""))
        unknown = sorted(set(limb_s) - {pc.name for pc in pieces})
        if unknown:
            raise ValueError(f"limb_s names no piece of the chain: {unknown[:4]} (keys are piece names, e.g. "
                             f"{pieces[0].name!r})")
    weigh = boot_s is not None
    us = 1e6  # seconds -> integer microseconds
    last_use: dict = {}
    for j, pc in enumerate(pieces):
        if pc.join:
            key = (pc.join[0], pc.join[1])
            last_use[key] = max(last_use.get(key, -1), j)
    states = {(start, ()): ((0, 0, 0), None)}  # state -> ((microseconds, ciphertexts refreshed, points), back)
    history = []
    for i, pc in enumerate(pieces):
        new: dict = {}
        need = pc.cost if pc.need is None else pc.need
        for key, ((secs, cost, npts), _) in states.items():
            level, refs = key
            live = dict(refs)
            if pc.join:
                which, ref, off = pc.join
                other = live[(which, ref)] - off
                level = level - 1 if other == level and not pc.product_join else min(level, other)
            for boot in ((False, True) if pc.bootable else (False,)):
                if boot and pc.bound > UNSCALED_BOOT_BOUND and level < 1 and not pc.coarse_ok:
                    continue  # large values are scaled down before a refresh: that takes a level
                lvl = top if boot else level
                if lvl < need:
                    continue
                nxt = dict(live)
                if last_use.get(("in", pc.name), -1) > i:
                    nxt[("in", pc.name)] = lvl
                if last_use.get(("out", pc.name), -1) > i:
                    nxt[("out", pc.name)] = lvl - pc.cost
                nxt = {k: v for k, v in nxt.items() if last_use[k] > i}
                k2 = (lvl - pc.cost, tuple(sorted(nxt.items())))
                val = (secs + (round(us * (boot * pc.width * boot_s + limb_s.get(pc.name, 0.0) * (lvl + 1)))
                               if weigh else 0), cost + (pc.width if boot else 0), npts + boot)
                if k2 not in new or val < new[k2][0]:
                    new[k2] = (val, (key, boot))
        if not new:
            raise ValueError(f"no bootstrap placement fits piece {pc.name} (needs {need} levels, bootstrapping "
                             f"returns level {top}): use parameters with more levels after bootstrapping")
        history.append(new)
        states = new
    key = min(states, key=lambda k: states[k][0])
    boots = set()
    for i in range(len(pieces) - 1, -1, -1):
        prev, boot = history[i][key][1]
        if boot:
            boots.add(i)
        key = prev
    rows, fail = _simulate(pieces, boots, start, top)
    if fail is not None:
        raise RuntimeError(f"internal: the placement fails at {pieces[fail].name}")
    return rows


def greedy_points(model: NexusModel, n: int, params, *, bootstrap_level: int | None = None) -> int:
    """Bootstrap points of refimpl.ckks.bootstrap.planner.place_bootstraps on the same chain
    (joins ignored, widths ignored): the baseline `place` is compared with."""
    from ..ckks.bootstrap.planner import Block, place_bootstraps

    p, top = bootstrap_level_of(params, bootstrap_level)
    pieces = _pieces(model, input_layout(model.config, n, p.slots))
    return place_bootstraps([Block(pc.name, pc.cost) for pc in pieces], top, top).bootstraps


@lru_cache(maxsize=16)
def _preset_depth(params: Parameters) -> int | None:
    from ..ckks.bootstrap.bootstrapper import BOOTSTRAP_PRESETS, bootstrap_preset

    for name, kw in BOOTSTRAP_PRESETS.items():
        if kw["N"] == params.N:
            p, rc = bootstrap_preset(name)
            if p.q == params.q:
                return params.L - rc.depth
    return None


def bootstrap_level_of(params, bootstrap_level: int | None = None) -> tuple[Parameters, int]:
    """(Parameters, level a bootstrap returns) from Parameters (+ level), a Bootstrapper, a
    (Parameters, ResolvedConfig) pair or a bootstrapping preset name."""
    if isinstance(params, str):
        from ..ckks.bootstrap.bootstrapper import bootstrap_preset

        params = bootstrap_preset(params)
    if isinstance(params, tuple):
        p, rc = params
        return p, p.L - rc.depth if bootstrap_level is None else bootstrap_level
    if hasattr(params, "output_level") and hasattr(params, "params"):
        return params.params, params.output_level if bootstrap_level is None else bootstrap_level
    if bootstrap_level is None:
        bootstrap_level = _preset_depth(params)
        if bootstrap_level is None:
            raise ValueError("plan: pass bootstrap_level= (the level a bootstrap returns) for non-preset parameters")
    return params, bootstrap_level


def plan(model: NexusModel, n: int, params, *, bootstrap_level: int | None = None, input_level: int | None = None,
         argmax: bool = False, head_rows: bool = False) -> list[dict]:
    """The bootstrapping plan, one row per piece: block, bootstrap before?, level in/out, cost, ciphertexts.

    params: Parameters (with bootstrap_level, or a bootstrapping preset's), a Bootstrapper, or a
    preset name. input_level: level of the client's ciphertexts (default: the bootstrap level).
    Print it with `plan_table`. Reference: NEXUS §3 (placement figure); planner.place_bootstraps."""
    p, top = bootstrap_level_of(params, bootstrap_level)
    lay = input_layout(model.config, n, p.slots, head_rows=head_rows)
    return place(_pieces(model, lay, argmax), top if input_level is None else input_level, top)


def plan_table(rows: list[dict]) -> str:
    """The plan as a fixed-width table (like the paper's placement figure), with totals."""
    out = [f"{'block':<22s} {'boot':>4s} {'cts':>4s} {'level in':>8s} {'cost':>4s} {'level out':>9s}"]
    for r in rows:
        out.append(f"{r['block']:<22s} {'yes' if r['bootstrap'] else '':>4s} {r['ciphertexts']:>4d} "
                   f"{r['level_in']:>8d} {r['cost']:>4d} {r['level_out']:>9d}")
    out.append(f"bootstrap points: {sum(r['bootstrap'] for r in rows)}, ciphertexts bootstrapped: "
               f"{sum(r['bootstraps'] for r in rows)}, levels used: {sum(r['cost'] for r in rows)}")
    return "\n".join(out)


def rotation_steps(config: BertConfig, n: int, slots: int, *, head_rows: bool = False) -> list[int]:
    """Every rotation the encrypted forward uses (the client generates these Galois keys; the
    bootstrapper's own come from Bootstrapper.galois_elements)."""
    lay = input_layout(config, n, slots, head_rows=head_rows)
    P, w, g, dh, n_pad, Lp = lay.chunk, lay.window, lay.baby, lay.head_dim, lay.n_pad, lay.label_pad
    rs = {-P} | set(range(1, g)) | {g * b for b in range(1, P // g)}  # linear layers
    rs |= {r * w for r in range(1, n_pad)} | {-r for r in range(1, n_pad)} | {r for r in range(1, n_pad)}
    rs |= {1 << k for k in range(dh.bit_length() - 1)} | {-(1 << k) for k in range(dh.bit_length() - 1)}
    if lay.head_rows:  # scores to / columns from the window start, heads hl of a chunk
        rs |= {hl * dh - r for hl in range(P // dh) for r in range(n_pad)} | {r - hl * dh for hl in range(P // dh)
                                                                                  for r in range(n_pad)}
    if n_pad * w < slots:
        rs.add(-n_pad * w)  # token duplication of K and V
    rs |= {-n_pad} | {1 << k for k in range(n_pad.bit_length() - 1)}  # Softmax rows
    rs |= {1 << k for k in range(P.bit_length() - 1)}  # LayerNorm and head sums
    rs |= {-l * w for l in range(1, lay.num_labels)} | {l * w - l for l in range(1, lay.num_labels)}
    rs |= {-Lp} | {1 << k for k in range(Lp.bit_length() - 1)}  # Argmax
    return sorted(r for r in rs if r % slots)


# ============================================================================ 1/sqrt in two pieces
def newton_split(newton: int) -> tuple[int, int]:
    """Newton steps of the first and the second 1/sqrt piece (second 0: one piece)."""
    if newton <= NEWTON_PER_PIECE:
        return newton, 0
    return newton - newton // 2, newton // 2


def _rsqrt_newton(ev, v: Ciphertext, lo: float, hi: float, newton: int, v_factor: float, steps: int | None = None):
    """y ~ 1/sqrt(u), u = v_factor v in [lo, hi]: linear guess, Newton y <- 1.5 y - 0.5 u y^3 (NEXUS §3.2;
    refimpl.nexus.layernorm.rsqrt up to its Goldschmidt steps). `newton` steps in all (the error check),
    the first `steps` of them here (default all). Returns (y at level l - 1 - 2 steps, u at l - 1,
    -u/2 at l - 1): -u/2 carries the remaining steps of a split (_newton_steps)."""
    from .layernorm import _times, initial_guess

    err = rsqrt_valid(float(lo), float(hi), newton, GOLDSCHMIDT)
    if err > 2.0**-10:
        raise ValueError(f"1/sqrt on [{lo}, {hi}] with {newton} Newton steps has relative error {err:.2e} > 2^-10")
    a, b = initial_guess(lo, hi)
    s = v.scale
    y = ev.add_const(_times(ev, v, -a * v_factor, v.level - 1, s), b)  # level l-1
    neg_half_u = _times(ev, v, -0.5 * v_factor, v.level - 1, s)
    y = _newton_steps(ev, y, neg_half_u, newton if steps is None else steps)
    return y, _times(ev, v, v_factor, v.level - 1, s), neg_half_u


def _newton_steps(ev, y: Ciphertext, neg_half_u: Ciphertext, steps: int) -> Ciphertext:
    """`steps` Newton steps y <- 1.5 y + (-u/2) y^3 (2 levels each; -u/2 at y's level or above)."""
    from .layernorm import _times

    for _ in range(steps):
        t = _mul(ev, y, neg_half_u)
        cubic = _mul(ev, t, ev.rescale(ev.square(y)))
        y = ev.add(cubic, _times(ev, y, 1.5, cubic.level, cubic.scale))  # level -2
    return y


def _rsqrt_goldschmidt(ev, y: Ciphertext, u: Ciphertext) -> Ciphertext:
    """x = u y, h = y/2; r = 1/2 - x h; x += x r; h += h r (GOLDSCHMIDT times); returns 2h (level - 1 - 2 G)."""
    from .layernorm import goldschmidt_rsqrt

    return goldschmidt_rsqrt(ev, y, u, GOLDSCHMIDT)


# ============================================================================ plaintext vectors
def _weights(model: NexusModel, i: int) -> dict:
    p = f"encoder.layer.{i}."
    return {k[len(p):]: v for k, v in model.w64.items() if k.startswith(p)}


class _Vectors:
    """The slot vectors of one layout: masks, diagonals, biases (float64; encoded on use)."""

    def __init__(self, lay: Layout, mask: np.ndarray):
        self.lay = lay
        S, w, n = lay.slots, lay.window, lay.n
        self.key = np.zeros(lay.n_pad)
        self.key[:n] = mask  # keys >= n are padding
        self.rows = S // w

    def features(self, F_: int, c: int, values=None) -> np.ndarray:
        """Chunk c of a per-feature vector (or 1) on the active windows' first P slots."""
        lay = self.lay
        P = lay.chunk
        v = np.zeros((self.rows, lay.window))
        part = np.ones(P) if values is None else np.zeros(P)
        if values is not None:
            seg = np.asarray(values, dtype=np.float64)[c * P:(c + 1) * P]
            part[:seg.size] = seg
        else:
            part[max(0, F_ - c * P):] = 0.0
        v[: lay.n, :P] = part
        return v.ravel()

    def heads(self, c: int) -> list[int]:
        """Local indices of the real heads in chunk c."""
        lay = self.lay
        per = lay.chunk // lay.head_dim
        return [hl for hl in range(per) if c * per + hl < lay.heads]

    def row_starts(self, c: int, r: int, scale: float, only: int | None = None) -> np.ndarray:
        """scale x key mask of key (t + r) mod n_pad at slot t w + hl dh (row starts of the real heads;
        only: of local head `only` alone)."""
        lay = self.lay
        v = np.zeros((self.rows, lay.window))
        keys = self.key[(np.arange(lay.n) + r) % lay.n_pad]  # [n]
        for hl in self.heads(c):
            if only is None or hl == only:
                v[: lay.n, hl * lay.head_dim] = scale * keys
        return v.ravel()

    def key_rows(self, c: int, scale: float = 1.0) -> np.ndarray:
        """Slot t w + hl dh + r = scale x key mask of key (t + r) mod n_pad (rows of the real heads of
        chunk c); with head_rows, score ciphertext c (head c) from slot t w."""
        lay = self.lay
        v = np.zeros((self.rows, lay.window))
        km = self.key[(np.arange(lay.n)[:, None] + np.arange(lay.n_pad)[None, :]) % lay.n_pad]  # [n, n_pad]
        for hl in ((0,) if lay.head_rows else self.heads(c)):
            v[: lay.n, hl * lay.head_dim: hl * lay.head_dim + lay.n_pad] = scale * km
        return v.ravel()

    def row_mask(self) -> np.ndarray:
        """1 on the first n_pad slots of every row segment (dh slots, or the window with head_rows)."""
        return (np.arange(self.lay.slots) % self.lay.row_segment < self.lay.n_pad).astype(np.float64)

    def diagonals(self, block: np.ndarray):
        """Generalised diagonals of a P x P block: D[k, o] = block[o, (o + k) mod P]."""
        P = self.lay.chunk
        o = np.arange(P)
        return block[o[None, :], (o[None, :] + np.arange(P)[:, None]) % P]  # [P, P]

    def tile(self, row: np.ndarray) -> np.ndarray:
        """A [P] vector on the first P slots of every active window."""
        lay = self.lay
        v = np.zeros((self.rows, lay.window))
        v[: lay.n, :lay.chunk] = row
        return v.ravel()


# ============================================================================ the encrypted forward
class _Forward:
    """Runs the pieces of `_pieces` on ciphertexts, following the plan (checks every level)."""

    def __init__(self, ev, bts, model: NexusModel, lay: Layout, mask, rows, pieces, trace):
        self.ev, self.bts, self.model, self.lay = ev, bts, model, lay
        self.vec = _Vectors(lay, mask)
        self.rows, self.pieces = rows, {p.name: p for p in pieces}
        self.i, self.trace, self.t0 = 0, trace, 0.0
        self.n_real = float(np.sum(mask))
        self.taps = None
        self.st = model.settings()

    # -- plan bookkeeping
    def enter(self, name: str, cts: list[Ciphertext]) -> list[Ciphertext]:
        row = self.rows[self.i]
        if row["block"] != name:
            raise RuntimeError(f"internal: the forward reached {name}, the plan expects {row['block']}")
        self.t0 = time.perf_counter()
        self.boots = 0
        if row["bootstrap"]:
            pc = self.pieces[name]
            cts = [self.refresh(ct, b) for ct, b in zip(cts, pc.bounds or (pc.bound,) * len(cts), strict=True)]
            self.boots = len(cts)
        if any(ct.level != row["level_in"] for ct in cts):
            raise RuntimeError(f"internal: {name} entered at level {[c.level for c in cts]}, planned {row['level_in']}")
        return cts

    def leave(self, name: str, cts: list[Ciphertext], level_in: int | None = None) -> list[Ciphertext]:
        row = self.rows[self.i]
        if any(ct.level != row["level_out"] for ct in cts):
            raise RuntimeError(f"internal: {name} left at level {[c.level for c in cts]}, planned {row['level_out']}")
        if self.trace is not None:
            self.trace.append({"block": name, "seconds": time.perf_counter() - self.t0, "level_in": row["level_in"],
                               "level_out": row["level_out"], "bootstraps": self.boots, "ciphertexts": len(cts)})
        self.i += 1
        return cts

    def refresh(self, ct: Ciphertext, bound: float) -> Ciphertext:
        """Bootstrap, with the slots scaled into [-1, 1] first when a level is left (EvalMod's accurate range)."""
        M = 2.0 ** max(0, math.ceil(math.log2(max(bound, 1.0))))
        if M > 1 and ct.level >= 1:
            low = self.ev.rescale(self.ev.mul_const(ct, 1.0 / M))  # slots / M, same scale
            return self.ev.mul_int(self.bts.bootstrap(low), int(M))  # slots x M: no level, scale kept
        return self.bts.bootstrap(ct)

    def join(self, a: Ciphertext, b: Ciphertext, subtract: bool = False) -> Ciphertext:
        """a +- b at the lower level; equal levels spend one level to match the scales (as `_simulate`)."""
        ev = self.ev
        if a.level > b.level:
            a = align(ev, a, b.level, b.scale)
        elif b.level > a.level:
            b = align(ev, b, a.level, a.scale)
        else:
            a = align(ev, a, a.level - 1, ev.params.scale)
            b = align(ev, b, b.level - 1, ev.params.scale)
        return ev.sub(a, b) if subtract else ev.add(a, b)

    # -- linear layers
    def linear(self, xs: list[Ciphertext], W: np.ndarray, b: np.ndarray) -> list[Ciphertext]:
        """x W^T + b per token window: BSGS diagonal method on P x P blocks, 1 level (Halevi-Shoup; NEXUS §3.1.1)."""
        ev, lay, vec = self.ev, self.lay, self.vec
        P, g = lay.chunk, lay.baby
        out_f, in_f = W.shape
        cin, cout = lay.chunks(in_f), lay.chunks(out_f)
        Wp = np.zeros((cout * P, cin * P))
        Wp[:out_f, :in_f] = W
        level = xs[0].level
        q = float(ev.params.q[level])
        babies = []
        for x in xs:  # x + RotR(x, P) makes each window cyclic; baby steps hoisted
            babies.append(ev.rotate_hoisted(ev.add(x, ev.rotate(x, -P)), list(range(g))))
        outs = []
        for oc in range(cout):
            diags = [vec.diagonals(Wp[oc * P:(oc + 1) * P, ic * P:(ic + 1) * P]) for ic in range(cin)]
            total = None
            for gb in range(P // g):
                inner = None
                for ic in range(cin):
                    for i in range(g):
                        k = gb * g + i
                        dk = diags[ic][k]
                        if not dk.any():
                            continue
                        pt = ev.encoder.encode(np.roll(vec.tile(dk), gb * g), level=level, scale=q)
                        term = ev.mul_plain(babies[ic][i], pt)  # scale x q
                        inner = term if inner is None else ev.add(inner, term)
                if inner is None:
                    continue
                inner = ev.rotate(inner, gb * g) if gb else inner  # giant step
                total = inner if total is None else ev.add(total, inner)
            if total is None:  # an all-zero block row: a zero ciphertext at the right level
                total = ev.mul_int(babies[0][0], 0)
                total = Ciphertext(total.c, total.level, xs[0].scale * q, total.params)
            y = with_scale(ev.rescale(total), xs[0].scale)  # level l -> l-1
            outs.append(ev.add_const(y, vec.features(out_f, oc, b)))
        return outs

    # -- attention
    def scores(self, q: Ciphertext, k: Ciphertext, c: int, scale: float, shift: float) -> Ciphertext:
        """Rows of S = Q K^T scale (+ shift on real rows) for chunk c (NEXUS §3.1.2, batched over key shifts)."""
        ev, lay, vec = self.ev, self.lay, self.vec
        w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
        kd = k if n_pad * w == lay.slots else ev.add(k, ev.rotate(k, -n_pad * w))  # keys cyclic over n_pad
        krot = ev.rotate_hoisted(kd, [r * w for r in range(n_pad)])
        acc = None
        for r in range(n_pad):
            u = ev.rescale(ev.multiply(q, krot[r * w]))  # slot t w + f: Q[t, f] K[t + r, f]; level -1
            u = quick_sum(ev, u, dh)  # slot t w + hl dh: S[h, t, t + r] / scale
            u = ev.rescale(ev.mul_const(u, vec.row_starts(c, r, scale)))  # keep row starts, x key mask; level -2
            u = ev.rotate(u, -r) if r else u  # entry r of the row
            acc = u if acc is None else ev.add(acc, u)
        if shift:
            acc = ev.add_const(acc, vec.key_rows(c, shift))
        return acc

    def head_scores(self, q: Ciphertext, k: Ciphertext, c: int, scale: float, shift: float,
                    shifts=None) -> list[Ciphertext]:
        """head_rows: the rows of S for each head of chunk c in a ciphertext of its own, entry r of row
        (t, h) at slot t w + r (as `scores`, each head's row start moved from t w + hl dh to t w + r).
        shifts: the key shifts r to compute (default all n_pad; a subset times a fraction of the work)."""
        ev, lay, vec = self.ev, self.lay, self.vec
        w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
        rs = list(range(n_pad) if shifts is None else shifts)
        kd = k if n_pad * w == lay.slots else ev.add(k, ev.rotate(k, -n_pad * w))  # keys cyclic over n_pad
        krot = ev.rotate_hoisted(kd, [r * w for r in rs])
        heads = vec.heads(c)
        acc = [None] * len(heads)
        for r in rs:
            u = ev.rescale(ev.multiply(q, krot[r * w]))  # slot t w + f: Q[t, f] K[t + r, f]; level -1
            u = quick_sum(ev, u, dh)  # slot t w + hl dh: S[h, t, t + r] / scale
            for j, hl in enumerate(heads):
                m = ev.rescale(ev.mul_const(u, vec.row_starts(c, r, scale, only=hl)))  # head hl's row starts; level -2
                m = ev.rotate(m, hl * dh - r) if hl * dh != r else m  # entry r of the row, from the window start
                acc[j] = m if acc[j] is None else ev.add(acc[j], m)
        if shift:
            acc = [ev.add_const(a, vec.key_rows(c, shift)) for a in acc]
        return acc

    def softmax_pieces(self, i: int, S: list[Ciphertext]) -> list[Ciphertext]:
        """Softmax over each row (NEXUS Alg. 1): QuickMax rounds, exp, QuickSum, Goldschmidt, product."""
        ev, lay, vec, p = self.ev, self.lay, self.vec, f"L{i}."
        B, n_pad = self.st["B"], lay.n_pad
        rows = vec.row_mask()  # every row segment's first n_pad slots
        kms = [vec.key_rows(c) for c in range(len(S))]
        x = self.enter(p + "softmax.round0", S)
        s = [duplicate_rows(ev, ev.add_const(xc, -B * (rows - km)), n_pad) for xc, km in zip(x, kms)]  # padded -> -B
        rounds = n_pad.bit_length() - 1
        for k in range(rounds):
            if k:
                s = self.enter(p + f"softmax.round{k}", s)
            s = self.leave(p + f"softmax.round{k}", [max_pair(ev, sc, ev.rotate(sc, 1 << k), B) for sc in s])
        d = self.enter(p + "softmax.exp", [self.join(xc, m, subtract=True) for xc, m in zip(x, s)])
        r = self.st["exp_r"]  # 6 (NEXUS), 7 when 2B > 64 (the official code's r)
        e = self.leave(p + "softmax.exp", [exp(ev, dc, lo=-2 * B, mask=km, r=r) for dc, km in zip(d, kms)])
        k_inv = goldschmidt_iterations(0.5, float(n_pad))
        ssum = self.enter(p + "softmax.inverse", [quick_sum(ev, ec, n_pad, duplicate=True) for ec in e])
        inv = self.leave(p + "softmax.inverse", [inverse(ev, sc, 0.5, float(n_pad), k_inv) for sc in ssum])
        self.enter(p + "softmax.normalize", [])
        return self.leave(p + "softmax.normalize", [_mul(ev, ec, ic) for ec, ic in zip(e, inv)])

    def pv(self, i: int, probs: list[Ciphertext], V: list[Ciphertext], shifts=None) -> list[Ciphertext]:
        """O = P V (NEXUS §3.1.4): per key shift r, mask column r, move it to the head's first slot,
        broadcast over dh slots, times RotL(V, r w). With head_rows, probs holds one ciphertext per
        head and the columns of a chunk's heads are moved to their heads' slots and added.
        shifts: the key shifts r (default all n_pad; a subset times a fraction of the work)."""
        ev, lay, vec, p = self.ev, self.lay, self.vec, f"L{i}."
        w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
        probs = self.enter(p + "pv.mask", probs)
        rs = list(range(n_pad) if shifts is None else shifts)
        pos = np.arange(lay.slots) % lay.row_segment  # position inside the row's segment
        cols = []
        for c, pc in enumerate(probs):
            km = vec.key_rows(c)
            cols.append({r: ev.rescale(ev.mul_const(pc, km * (pos == r)))  # column r of every row; level -1
                         for r in rs})
        self.leave(p + "pv.mask", [cl[rs[0]] for cl in cols])
        self.enter(p + "pv.mul", [])
        outs = []
        for c, vc in enumerate(V):
            vd = vc if n_pad * w == lay.slots else ev.add(vc, ev.rotate(vc, -n_pad * w))
            vrot = ev.rotate_hoisted(vd, [r * w for r in rs])
            acc = None
            for r in rs:
                if lay.head_rows:  # head hl's column: from slot t w + r to t w + hl dh
                    per = lay.chunk // dh
                    b = None
                    for hl in self.vec.heads(c):
                        col = cols[c * per + hl][r]
                        col = ev.rotate(col, r - hl * dh) if r != hl * dh else col
                        b = col if b is None else ev.add(b, col)
                else:
                    b = ev.rotate(cols[c][r], r) if r else cols[c][r]  # P[h, t, t + r] at slot t w + hl dh
                for k in range(dh.bit_length() - 1):
                    b = ev.add(b, ev.rotate(b, -(1 << k)))  # broadcast over the head's dh slots
                lvl = min(b.level, vrot[r * w].level)
                term = ev.multiply(ev.drop_level(b, lvl), ev.drop_level(vrot[r * w], lvl))
                acc = term if acc is None else ev.add(acc, term)
            outs.append(ev.rescale(acc))  # level -1
        return self.leave(p + "pv.mul", outs)

    # -- LayerNorm over chunks, in four pieces
    def layernorm(self, name: str, xs: list[Ciphertext], gamma, beta, ln: tuple) -> list[Ciphertext]:
        """gamma (x - mu) / sqrt(var) + beta over the d features of each token, chunks summed (NEXUS §3.2).

        xs entered the piece `name` already (joined, refreshed as planned). 1/sqrt: refimpl.nexus.layernorm's
        linear guess, Newton and Goldschmidt steps, split where a refresh may go."""
        ev, lay, vec = self.ev, self.lay, self.vec
        alpha, lo, hi, newton = ln
        d, P = lay.d, lay.chunk
        tot = xs[0]
        for x in xs[1:]:
            tot = ev.add(tot, x)
        s = quick_sum(ev, tot, P, duplicate=True)  # d mu in the feature slots
        xc = [ev.rescale(ev.mul_const(ev.sub(ev.mul_int(x, d), s), vec.features(d, c) * (alpha / d)))
              for c, x in enumerate(xs)]  # alpha (x - mu) on the features, 0 elsewhere; level -1
        sq = None
        for u in xc:
            t = ev.rescale(ev.square(u))
            sq = t if sq is None else ev.add(sq, t)
        v = self.leave(name, [quick_sum(ev, sq, P, duplicate=True)])[0]  # d alpha^2 var; level -2
        v = self.enter(name + ".rsqrt", [v])[0]
        first, rest = newton_split(newton)
        y, u, w = _rsqrt_newton(ev, v, lo, hi, newton, 1.0 / d, steps=first)
        y = self.leave(name + ".rsqrt", [y])[0]
        if rest:  # (y, -u/2) across a possible refresh; u = -2 (-u/2) costs no level
            y, w = self.enter(name + ".newton", [y, ev.drop_level(w, y.level)])
            y = self.leave(name + ".newton", [_newton_steps(ev, y, w, rest)])[0]
            u = ev.mul_int(w, -2)
        y, u = self.enter(name + ".gold", [y, ev.drop_level(u, y.level)])
        h2 = self.leave(name + ".gold", [_rsqrt_goldschmidt(ev, y, u)])[0]
        self.enter(name + ".out", [])
        outs = []
        for c, u_ in enumerate(xc):
            xg = ev.rescale(ev.mul_const(u_, vec.features(d, c, gamma)))  # gamma alpha (x - mu); level -2
            outs.append(ev.add_const(_mul(ev, xg, h2), vec.features(d, c, beta)))
        return self.leave(name + ".out", outs)

    # -- activations
    def gelu_masked(self, ct: Ciphertext, c: int) -> Ciphertext:
        """The 4-piece GELU (NEXUS §3.3, refimpl.nexus.gelu) with the feature mask folded into the
        scale-aligning products (GELU(0) = 0.0085 must not leak into the zero half of the windows)."""
        from ..ckks.polyeval import evaluate_power
        from .gelu import BREAKPOINTS, P as GP, Q as GQ

        ev = self.ev
        m = self.vec.features(self.lay.intermediate, c) / self.st["act_div"]  # output / M (W_2 x M); level l -> l-18
        s, lvl = ct.scale, ct.level - (GELU_LEVELS - 1)
        q_lvl = float(ev.params.q[lvl])
        c = self.st["gelu_prescale"]
        bits = [sgn(ev, ct, bound=c, center=t, factor=0.5, target_scale=q_lvl) for t in BREAKPOINTS]
        dom = gelu_valid_range(c)
        pp, _ = evaluate_power(ev, ct, GP, *dom)  # level -3
        qq, _ = evaluate_power(ev, ct, GQ, *dom)  # level -4
        ind = [ev.sub(bits[0], bits[1]), ev.sub(bits[1], bits[2]), ev.add_const(bits[2], 0.5)]
        terms = []
        for v, b in zip((pp, qq, ct), ind):
            up = ev.drop_level(v, lvl + 1)
            mv = with_scale(ev.rescale(ev.mul_const(up, m, scale=s * float(ev.params.q[lvl + 1]) / up.scale)), s)
            terms.append(ev.multiply(mv, b))
        total = ev.add(ev.add(terms[0], terms[1]), terms[2])
        return with_scale(ev.rescale(total), s)  # level -18

    def quad(self, u: Ciphertext, c: int) -> Ciphertext:
        """Quad(z) / M = u^2 + (0.25 / (r sqrt M)) u + 0.5 / M with u = r z / sqrt(M), r = sqrt(0.125) and
        1/sqrt(M) folded into W_1 (M = act_div, undone by W_2 x M): 1 level (MPCFormer's Quad)."""
        from .layernorm import _times

        ev, M = self.ev, self.st["act_div"]
        sq = ev.rescale(ev.square(u))  # level -1
        lin = _times(ev, u, F.QUAD[1] / (QUAD_ROOT * math.sqrt(M)), sq.level, sq.scale)
        return ev.add_const(ev.add(sq, lin), self.vec.features(self.lay.intermediate, c) * (F.QUAD[0] / M))

    # -- head
    def head(self, xs: list[Ciphertext]) -> Ciphertext:
        """logit l = W_C[l] . x[CLS] + b_C[l] in slot l w (1 level; [CLS] head, no tanh pooler)."""
        ev, lay = self.ev, self.lay
        P, w = lay.chunk, lay.window
        Wc, bc = self.model.w64["classifier.weight"], self.model.w64["classifier.bias"]
        acc = None
        for l in range(lay.num_labels):
            y = None
            for c, x in enumerate(xs):
                v = np.zeros(lay.slots)
                seg = Wc[l, c * P:(c + 1) * P]
                v[:seg.size] = seg  # window 0 = token 0 = [CLS]
                t = ev.mul_const(x, v)
                y = t if y is None else ev.add(y, t)
            y = ev.rescale(y)
            y = ev.rotate(y, -l * w) if l else y
            acc = y if acc is None else ev.add(acc, y)
        z = quick_sum(ev, acc, P)  # slot l w: the dot product
        bias = np.zeros(lay.slots)
        bias[np.arange(lay.num_labels) * w] = bc
        return ev.add_const(z, bias)

    def argmax(self, z: Ciphertext) -> Ciphertext:
        """1 + Sgn((x - QuickMax(x)) / 2B) over the logits (NEXUS §3.4), logits compacted into slots 0 .. L-1."""
        ev, lay = self.ev, self.lay
        w, Lp, B = lay.window, lay.label_pad, LOGIT_BOUND
        z = self.enter("argmax.compact", [z])[0]
        acc = None
        for l in range(lay.num_labels):
            e = np.zeros(lay.slots)
            e[l * w] = 1.0
            t = ev.rescale(ev.mul_const(z, e))
            t = ev.rotate(t, l * w - l) if l else t
            acc = t if acc is None else ev.add(acc, t)
        z = self.leave("argmax.compact", [acc])[0]
        z = self.enter("argmax.round0", [z])[0]
        rows = (np.arange(lay.slots) % (2 * Lp) < Lp).astype(np.float64)
        km = np.zeros(lay.slots)
        km[: lay.num_labels] = 1.0
        xa = ev.add_const(z, -B * (rows - km))
        s = duplicate_rows(ev, xa, Lp)
        for k in range(Lp.bit_length() - 1):
            if k:
                s = self.enter(f"argmax.round{k}", [s])[0]
            s = self.leave(f"argmax.round{k}", [max_pair(ev, s, ev.rotate(s, 1 << k), B)])[0]
        d = self.enter("argmax.sgn", [self.join(xa, s, subtract=True)])[0]
        return self.leave("argmax.sgn", [ev.add_const(sgn(ev, d, bound=2 * B), 1.0)])[0]

    # -- the whole model
    def run(self, cts: list[Ciphertext], argmax: bool) -> list[Ciphertext]:
        ev, lay, model, cfg = self.ev, self.lay, self.model, self.model.config
        dh = lay.head_dim
        x = cts
        for i in range(cfg.num_hidden_layers):
            w, p = _weights(model, i), f"L{i}."
            ln1, ln2 = self.st["ln"][p + "ln1"], self.st["ln"][p + "ln2"]
            x = self.enter(p + "qkv", x)
            Q = self.linear(x, w["attention.self.query.weight"], w["attention.self.query.bias"])
            K = self.linear(x, w["attention.self.key.weight"], w["attention.self.key.bias"])
            V = self.leave(p + "qkv", self.linear(x, w["attention.self.value.weight"], w["attention.self.value.bias"]))
            self.enter(p + "qk", [])
            if cfg.attention == "softmax":
                scale, shift = 1.0 / math.sqrt(dh), 0.0
            else:  # (s + c)^2 / f(n) = ((s + c) / sqrt(f))^2: f folded into the score mask
                a, b = cfg.freediv
                root = math.sqrt(a * self.n_real**b)
                scale, shift = 1.0 / (math.sqrt(dh) * root), cfg.quad_c / root
            if lay.head_rows:
                S = self.leave(p + "qk", [s for c, (qc, kc) in enumerate(zip(Q, K))
                                          for s in self.head_scores(qc, kc, c, scale, shift)])
            else:
                S = self.leave(p + "qk", [self.scores(qc, kc, c, scale, shift) for c, (qc, kc) in enumerate(zip(Q, K))])
            if cfg.attention == "softmax":
                probs = self.softmax_pieces(i, S)
            else:
                S = self.enter(p + "2quad", S)
                probs = self.leave(p + "2quad", [ev.rescale(ev.square(sc)) for sc in S])
            ctx = self.pv(i, probs, V)
            ctx = self.enter(p + "out", ctx)
            o = self.leave(p + "out", self.linear(ctx, w["attention.output.dense.weight"], w["attention.output.dense.bias"]))
            s1 = self.enter(p + "ln1", [self.join(a, b) for a, b in zip(o, x)])
            h1 = self.layernorm(p + "ln1", s1, w["attention.output.LayerNorm.weight"],
                                w["attention.output.LayerNorm.bias"], ln1)
            h1 = self.enter(p + "ffn1", h1)
            W1, b1 = w["intermediate.dense.weight"], w["intermediate.dense.bias"]
            M = self.st["act_div"]  # the activation's output is carried divided by M (refresh at level 0 safe)
            if cfg.activation == "quad":
                W1, b1 = W1 * (QUAD_ROOT / math.sqrt(M)), b1 * (QUAD_ROOT / math.sqrt(M))
            u = self.leave(p + "ffn1", self.linear(h1, W1, b1))
            act = p + ("quad" if cfg.activation == "quad" else "gelu")
            u = self.enter(act, u)
            if cfg.activation == "quad":
                a_ = self.leave(act, [self.quad(uc, c) for c, uc in enumerate(u)])
            else:
                a_ = self.leave(act, [self.gelu_masked(uc, c) for c, uc in enumerate(u)])
            a_ = self.enter(p + "ffn2", a_)
            f = self.leave(p + "ffn2", self.linear(a_, w["output.dense.weight"] * M, w["output.dense.bias"]))
            s2 = self.enter(p + "ln2", [self.join(a, b) for a, b in zip(f, h1)])
            x = self.layernorm(p + "ln2", s2, w["output.LayerNorm.weight"], w["output.LayerNorm.bias"], ln2)
            if self.taps is not None:
                self.taps[f"L{i}"] = x
        x = self.enter("head", x)
        z = self.leave("head", [self.head(x)])[0]
        return [self.argmax(z)] if argmax else [z]


def encrypted_forward(ev, bootstrapper, model: NexusModel, cts: list[Ciphertext], n: int, attention_mask, *,
                      trace: list | None = None, argmax: bool = False, taps: dict | None = None,
                      head_rows: bool = False) -> list[Ciphertext]:
    """The server's computation (NEXUS §3-4): every encoder layer, the [CLS] head, optionally Argmax.

    cts: pack_input's chunks, encrypted at one level (the plan starts there); n tokens;
    attention_mask [n] 0/1 (public). Bootstraps where `plan` puts them (bootstrapper: anything
    with .bootstrap(ct) and .output_level). trace (a list) receives one dict per piece: block,
    seconds, level in/out, bootstraps, ciphertexts; taps (a dict) receives each layer's output
    chunks as "L{i}" (for per-layer error checks by a key holder). Returns [logits ct] (slot l w = logit l,
    see unpack_output) or, with argmax=True, [selection ct] (slots 0 .. L-1, unpack_argmax).
    head_rows: input_layout's option for attention rows longer than a head (one score ciphertext per head)."""
    mask = np.asarray(attention_mask, dtype=np.float64).reshape(-1)
    if mask.size != n:
        raise ValueError(f"attention mask of length {mask.size} for n = {n} tokens")
    if not set(np.unique(mask)) <= {0.0, 1.0} or mask.sum() < 1:
        raise ValueError("the attention mask must be 0/1 with at least one real token")
    lay = input_layout(model.config, n, ev.params.slots, head_rows=head_rows)
    if len(cts) != lay.chunks(lay.d):
        raise ValueError(f"expected {lay.chunks(lay.d)} input ciphertexts (chunks of {lay.chunk} features), got {len(cts)}")
    if len({c.level for c in cts}) != 1:
        raise ValueError(f"input ciphertexts at different levels {[c.level for c in cts]}")
    pieces = _pieces(model, lay, argmax)
    rows = place(pieces, cts[0].level, bootstrapper.output_level)
    fw = _Forward(ev, bootstrapper, model, lay, mask, rows, pieces, trace)
    fw.taps = taps
    return fw.run(list(cts), argmax)


# ============================================================================ plaintext reference
def _softmax_model(s: np.ndarray, key: np.ndarray, n_pad: int, B: float, r: int = EXP_R) -> np.ndarray:
    """The float64 model of `softmax_pieces`: rows in the encrypted key order (i + r) mod n_pad,
    the same QuickMax (Sgn polynomial), exp, Goldschmidt inverse. s [h, n, n], key [n_pad] -> [h, n, n]."""
    from .folding import quick_max_plain, quick_sum_plain

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
    m = quick_max_plain(flat - B * (rmask - kmr).ravel(), n_pad, B, duplicate=True)
    e = exp_plain(flat - m, r) * kmr.ravel()
    tot = quick_sum_plain(e, n_pad, duplicate=True)
    p = (e * inverse_plain(tot, 0.5, float(n_pad), goldschmidt_iterations(0.5, float(n_pad)))).reshape(h * n, 2 * n_pad)
    pr = p[:, :n_pad].reshape(h, n, n_pad)
    out = np.zeros((h, n, n_pad))
    np.put_along_axis(out, np.broadcast_to(order, (h, n, n_pad)), pr, axis=2)
    return out[:, :, :n]


def _ln_model(x: np.ndarray, gamma, beta, alpha: float, lo: float, hi: float, newton: int) -> np.ndarray:
    """The float64 model of `_Forward.layernorm`: exact mean and variance, the 1/sqrt approximation."""
    xc = alpha * (x - x.mean(axis=-1, keepdims=True))
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return xc * gamma * rsqrt_plain(var, lo, hi, newton, GOLDSCHMIDT) + beta


def plaintext_reference(model: NexusModel, input_ids, attention_mask, *, approximate: bool, _record: bool = True) -> dict:
    """Float64 forward with per-layer activations: the encrypted computation's approximations
    (approximate=True: QuickMax/exp/Goldschmidt Softmax in the encrypted key order, the
    4-piece GELU with the Sgn polynomial, LayerNorm's 1/sqrt by Newton + Goldschmidt) or the
    exact model (approximate=False: the config's own functions, as refimpl.bert.model.forward).

    Returns {"hidden": [n, d] per layer (embeddings first), "probs": [h, n, n] per layer,
    "logits": [num_labels], "record": per-block ranges (scores, variances, activation inputs)}."""
    cfg = model.config
    mask = np.asarray(attention_mask, dtype=np.float64).reshape(-1)
    x = client_embed(cfg, model.params, input_ids, mask)  # [n, d]
    n, d = x.shape
    h, dh = cfg.num_attention_heads, cfg.head_dim
    n_pad = max(2, _pow2(n))
    key = np.zeros(n_pad)
    key[:n] = mask
    st = model.settings() if approximate else None
    rec = {"score_absmax": 0.0, "var": {}, "act": [np.inf, -np.inf], "absmax": {}}
    hidden, probs_all = [x], []

    def absmax(name, a):
        rec["absmax"][name] = max(rec["absmax"].get(name, 0.0), float(np.max(np.abs(a))))

    def add_norm(p, j, y, resid, pre):
        """LayerNorm(y W + b + resid) of the sublayer `pre` ("attention.output." or "output.")."""
        s_ = y @ w[pre + "dense.weight"].T + w[pre + "dense.bias"] + resid
        absmax(p + "sum" + j, s_)
        _var(rec, p + "ln" + j, s_)
        g, be = w[pre + "LayerNorm.weight"], w[pre + "LayerNorm.bias"]
        return _ln_model(s_, g, be, *st["ln"][p + "ln" + j]) if approximate else F.layer_norm(s_, g, be, cfg.layer_norm_eps)

    for i in range(cfg.num_hidden_layers):
        w, p = _weights(model, i), f"L{i}."
        absmax(p + "x", x)
        q, k, v = (x @ w[f"attention.self.{m}.weight"].T + w[f"attention.self.{m}.bias"] for m in ("query", "key", "value"))
        qh, kh, vh = (a.reshape(n, h, dh).transpose(1, 0, 2) for a in (q, k, v))  # [h, n, dh]
        s = qh @ kh.transpose(0, 2, 1) / math.sqrt(dh)  # [h, n, n]
        rec["score_absmax"] = max(rec["score_absmax"], float(np.max(np.abs(s[:, :, mask > 0]))))
        if cfg.attention == "softmax":
            probs = _softmax_model(s, key, n_pad, st["B"], st["exp_r"]) if approximate else F.attention_probs(s, mask, "softmax")
        else:
            a_, b_ = cfg.freediv
            probs = F.attention_probs(s, mask, cfg.attention, c=cfg.quad_c, a=a_, b=b_)
        probs_all.append(probs)
        ctx = (probs @ vh).transpose(1, 0, 2).reshape(n, d)
        absmax(p + "ctx", ctx)
        h1 = add_norm(p, "1", ctx, x, "attention.output.")
        absmax(p + "h1", h1)
        u = h1 @ w["intermediate.dense.weight"].T + w["intermediate.dense.bias"]
        rec["act"] = [min(rec["act"][0], float(u.min())), max(rec["act"][1], float(u.max()))]
        absmax(p + "act_in", u)
        if cfg.activation == "quad":
            a = F.quad(u)
        else:
            a = gelu_model(u, st["gelu_prescale"]) if approximate else F.activation(u, cfg.activation)
        absmax(p + "act_out", a)
        x = add_norm(p, "2", a, h1, "output.")
        hidden.append(x)
    absmax(f"L{cfg.num_hidden_layers}.x", x)
    logits = model.w64["classifier.weight"] @ x[0] + model.w64["classifier.bias"]
    return {"hidden": hidden, "probs": probs_all, "logits": logits, "record": rec}


def _var(rec: dict, name: str, x: np.ndarray) -> None:
    v = x.var(axis=-1)
    lo, hi = rec["var"].get(name, (np.inf, -np.inf))
    rec["var"][name] = (min(lo, float(v.min())), max(hi, float(v.max())))


def argmax_reference(logits: np.ndarray, num_labels: int) -> np.ndarray:
    """The float64 model of the encrypted Argmax on a logit vector (NEXUS §3.4)."""
    from .folding import quick_max_plain

    Lp = max(2, _pow2(num_labels))
    row = np.zeros(2 * Lp)
    row[:num_labels] = logits
    km = np.zeros(2 * Lp)
    km[:num_labels] = 1.0
    rmask = np.zeros(2 * Lp)
    rmask[:Lp] = 1.0
    xa = row - LOGIT_BOUND * (rmask - km)
    m = quick_max_plain(xa, Lp, LOGIT_BOUND, duplicate=True)
    return (1.0 + sgn_plain((xa - m) / (2 * LOGIT_BOUND)))[:num_labels]


# ============================================================================ experiment (results/nexus_bert_*.json)
def run_sentences(model: NexusModel, sentences, params, rc, *, seed: int = 0, progress=print, on_row=None) -> dict:
    """Client and server in one process (the secret key only decrypts): encrypted vs plaintext
    logits per sentence [(text, ids, mask)], per-layer errors, bootstraps, time per block."""
    import resource

    from ..ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
    from ..ckks.bootstrap.bootstrapper import Bootstrapper
    from ..ckks.keys import galois_element
    from ..ring.sampling import RandomSource

    t = time.perf_counter()
    kg = KeyGenerator(params, RandomSource(seed + 1))
    sk = kg.secret_key()
    probe = Bootstrapper(Evaluator(params), rc)
    rots = sorted({r for _, ids, _ in sentences for r in rotation_steps(model.config, len(ids), params.slots)})
    levels = {galois_element(params, r): probe.output_level for r in rots if r % params.slots}  # after bootstrapping
    for k, lv in probe.galois_levels().items():
        levels[k] = max(levels.get(k, -1), lv)
    ev = Evaluator(params, kg.evaluation_keys(sk, elements=list(levels), levels=levels))
    bts = Bootstrapper(ev, rc, encapsulation=kg.encapsulation_keys(sk, kg.secret_key(hamming_weight=rc.encapsulation_h))
                       if rc.encapsulation_h else None)
    enc, E, D = Encoder(params), Encryptor(kg.public_key(sk), RandomSource(seed + 2)), Decryptor(sk)
    keygen_s = time.perf_counter() - t
    out = []
    for text, ids, mask in sentences:
        lay = input_layout(model.config, len(ids), params.slots)
        ap = plaintext_reference(model, ids, mask, approximate=True)
        ex = plaintext_reference(model, ids, mask, approximate=False)
        check_ranges(model, ap)
        x = client_embed(model.config, model.params, ids, mask)
        cts = [E.encrypt(enc.encode(v, level=bts.output_level)) for v in pack_input(x, lay)]
        trace, taps = [], {}
        t = time.perf_counter()
        calls0 = bts.calls
        (z,) = encrypted_forward(ev, bts, model, cts, len(ids), mask, trace=trace, taps=taps)
        secs = time.perf_counter() - t
        logits = unpack_output([enc.decode(D.decrypt(z)).real], lay, model.config.num_labels)
        layer_err = [float(np.max(np.abs(_unpack([enc.decode(D.decrypt(c)).real for c in taps[f"L{i}"]], lay, lay.d)
                                         - ap["hidden"][i + 1]))) for i in range(model.config.num_hidden_layers)]
        row = {"sentence": text, "n": len(ids), "logits_encrypted": logits.tolist(), "logits_model": ap["logits"].tolist(),
               "logits_exact": ex["logits"].tolist(),
               "max_err_vs_model": float(np.max(np.abs(logits - ap["logits"]))),
               "max_err_vs_exact": float(np.max(np.abs(logits - ex["logits"]))),
               "model_vs_exact": float(np.max(np.abs(ap["logits"] - ex["logits"]))),
               "layer_max_err_vs_model": layer_err,
               "pred_encrypted": int(np.argmax(logits)), "pred_model": int(np.argmax(ap["logits"])),
               "pred_exact": int(np.argmax(ex["logits"])), "bootstraps": bts.calls - calls0, "seconds": round(secs, 1),
               "block_seconds": {r["block"]: round(r["seconds"], 2) for r in trace}}
        out.append(row)
        if on_row is not None:
            on_row(out)  # e.g. write the rows so far (long runs)
        progress(json.dumps({k: row[k] for k in ("n", "max_err_vs_model", "pred_encrypted", "pred_exact", "bootstraps", "seconds")}))
    return {"keygen_s": round(keygen_s, 1), "rows": out, "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "bootstrap": bts.describe(), "security": params.security_note}


def main(argv: list[str] | None = None) -> int:
    """python -m refimpl.nexus.bert --model DIR_OR_SHIPPED_NAME [--logN 12] [--sentences 4] --json FILE."""
    import argparse
    import sys

    from ..bert import weights
    from ..bert.tokenizer import BertTokenizer
    from ..ckks.bootstrap.bootstrapper import bootstrap_parameters

    ap = argparse.ArgumentParser(prog="python -m refimpl.nexus.bert", description=main.__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--glue-dir", default="../shared/data/glue")
    ap.add_argument("--logN", type=int, default=12)
    ap.add_argument("--levels-after", type=int, default=19)
    ap.add_argument("--sentences", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--offset", type=int, default=0, help="skip this many short dev sentences")
    ap.add_argument("--calibration", type=int, default=200, help="short SST-2 train sentences for the ranges")
    ap.add_argument("--json")
    ap.add_argument("--plan-only", nargs="*", metavar="PRESET",
                    help="print and record the plans at these bootstrapping presets (e.g. 128-2^16-dense) for n = 8, 16")
    a = ap.parse_args(argv)
    from pathlib import Path

    if a.logN <= 12:
        import numba

        numba.set_num_threads(1)  # small rings: thread launches dominate (tests/nexus/conftest.py)

    d = Path(a.model)
    if not d.exists():
        from ..bert.shipped import model_dir

        d = model_dir(a.model)
    cfg, prm = weights.load(d, dtype=np.float32)
    tok = BertTokenizer(d / "vocab.txt")

    def short(split, k):
        rows = [ln.rstrip("\n").split("\t") for ln in open(Path(a.glue_dir) / "SST-2" / f"{split}.tsv")][1:]
        out = []
        for text, *_ in rows:
            ids, _ = tok.encode(text, max_length=128)
            if len(ids) <= a.max_tokens:
                out.append((text, np.array(ids), np.ones(len(ids), dtype=np.int64)))
            if len(out) == k:
                break
        return out

    model = NexusModel(cfg, prm)
    model.ranges = calibrate(model, [(i, m) for _, i, m in short("train", a.calibration)])
    if a.plan_only is not None:
        from ..ckks.bootstrap.bootstrapper import bootstrap_preset

        res = {"model": str(a.model), "settings": model.settings(), "plans": []}
        for name in a.plan_only:
            pr = bootstrap_preset(name)
            for n in (8, 16):
                rows = plan(model, n, pr)
                res["plans"].append({
                    "preset": name, "N": pr[0].N, "bootstrap_level": pr[0].L - pr[1].depth, "n": n,
                    "chunk": input_layout(cfg, n, pr[0].slots).chunk,
                    "levels_used": sum(r["cost"] for r in rows), "bootstrap_points": sum(r["bootstrap"] for r in rows),
                    "ciphertexts_bootstrapped": sum(r["bootstraps"] for r in rows),
                    "greedy_points": greedy_points(model, n, pr), "table": plan_table(rows).splitlines()})
                print(name, n, res["plans"][-1]["ciphertexts_bootstrapped"], file=sys.stderr)
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
        return 0
    params, rc = bootstrap_parameters(2**a.logN, levels_after=a.levels_after, encapsulation_h=32, num_p=3,
                                      insecure=a.logN < 16)
    print(f"{'INSECURE toy ring' if params.insecure else '128-bit'}: {params.security_note}", file=sys.stderr)
    sents = short("dev", a.offset + a.sentences)[a.offset:]
    rows = plan(model, max(len(s[1]) for s in sents), (params, rc))
    print(plan_table(rows), file=sys.stderr)
    def partial(rows_so_far):
        if a.json:
            cmd = "python -m refimpl.nexus.bert " + " ".join(argv if argv is not None else sys.argv[1:])
            Path(a.json).write_text(json.dumps({"partial": True, "command": cmd, "model": str(a.model), "N": params.N,
                                                "insecure": params.insecure, "rows": rows_so_far}, indent=1) + "\n")

    res = run_sentences(model, sents, params, rc, progress=lambda s: print(s, file=sys.stderr), on_row=partial)
    res.update(model=str(a.model), config=json.loads(cfg.to_json()), N=params.N, levels_after=a.levels_after,
               log_qp=round(params.log_qp), insecure=params.insecure, settings=model.settings(),
               command="python -m refimpl.nexus.bert " + " ".join(argv if argv is not None else sys.argv[1:]),
               plan_bootstraps_per_sentence_at_max_n=sum(r["bootstraps"] for r in rows),
               agreement=sum(r["pred_encrypted"] == r["pred_model"] for r in res["rows"]),
               max_err_vs_model=max(r["max_err_vs_model"] for r in res["rows"]))
    text = json.dumps(res, indent=1)
    if a.json:
        Path(a.json).write_text(text + "\n")
    print(json.dumps({k: res[k] for k in ("agreement", "max_err_vs_model", "plan_bootstraps_per_sentence_at_max_n")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
