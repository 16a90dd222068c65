"""The encrypted BERT's model: weights, calibrated value ranges, and the approximations' settings.

The approximations have valid input ranges (Softmax: 2B <= 2^r, r = 6, or 7 when the scores
need it, the official code's r; GELU: [-13, 12] with the paper's Sgn((x - t)/16), [-29, 28]
with /32; 1/sqrt: the variance range, 4 to 12 Newton steps). The server cannot look at the
data, so a NexusModel carries ranges calibrated on plaintext inputs (`calibrate`, the model
owner's step), with margins; they travel as JSON (`ranges_to_json`, `ranges_from_json`), and
`check_ranges` raises when a plaintext reference leaves them. The margins and the choice of
the settings from the ranges are ours (refimpl's).

Reference: NEXUS (Zhang et al., NDSS 2025) §3 (inputs of the approximations must be normalised).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...bert.config import BertConfig
from ..gelu import BREAKPOINTS
from ..layernorm import GOLDSCHMIDT, NEWTON, valid as rsqrt_valid
from ..softmax import EXP_R
from .reference import plaintext_reference

SCORE_MARGIN = 1.25  # calibrated |score| max times this is the Softmax bound B
VAR_MARGIN = 1.5  # calibrated variance range widened by this factor on both sides
GELU_MARGIN = 1.1  # calibrated GELU input range widened by this factor
MAX_NEWTON = 12  # Newton steps of 1/sqrt for wide variance ranges (MiniLM's second LayerNorms: ratios ~1000-11000)
GELU_PRESCALES = (16.0, 32.0)  # the paper's Sgn((x - t)/16); /32 doubles the valid range (blend zone 0.28 -> 0.56)
CALIBRATION_SEED = 0

# The design switches of NexusModel (ours) and their defaults; every one False is the previous path, kept as
# the oracle the new one is tested against. Each is described where `NexusModel.settings` reads it.
DESIGN_OPTIONS = {
    "score_prescale": True, "gelu_pair_refresh": True, "softmax_pack": True, "pv_quads": True, "pv_shared": True,
    "pv_lazy": False, "qk_lazy": False, "kv_complex": True, "qkv_complex": True, "ffn_complex": True,
    "out_complex": True, "lazy_relin": True, "spread_shared": True, "sums_pack": True, "rsqrt_carry": True,
    "precise_variance": True, "ln_input_guard": True, "rsqrt_carry_whole": True
}


@dataclass
class NexusModel:
    """A BERT classifier prepared for CKKS (server side): plaintext weights, encoded lazily per level.

    ranges: calibrated per-block value ranges (see `calibrate`); computed on first use from
    synthetic token sequences of the vocabulary when not given. options (ours; each default True but
    pv_lazy and qk_lazy (default False: each takes a level, which costs the student a refresh per layer); False
    selects the previous path): "score_prescale" (Softmax's scores carried divided by 2B),
    "gelu_pair_refresh" (the paired GELU outputs refreshed together), "softmax_pack" (the running maxima
    packed), "pv_quads" (P V with two hidden chunks per rotated ciphertext, refimpl.nexus.bert.attention_quads),
    "pv_shared" (its probabilities of a head of both chunks in one ciphertext, attention_quads.pv_quads), "pv_lazy"
    (its products rescaled once per output chunk, the probabilities one level higher, attention_quads.pv_lazy), "qk_lazy"
    (Q K^T on head pairs with the row mask once on the sum, attention.feature_products_lazy), "kv_complex" (the skews of K and V run on two operands packed as one complex ciphertext,
    refimpl.nexus.bert.attention_packed), "qkv_complex" (QKV emitting Q, K and V with complex outputs, K and V packed
    for attention_packed, refimpl.nexus.bert.qkv_packed), "ffn_complex" (the FFN on complex-packed chunk pairs,
    refimpl.nexus.bert.linear_pairs), "out_complex" (the output projection two output chunks per ciphertext,
    linear_pairs.split_outputs), "lazy_relin" (lazy relinearization in Softmax's Sgn, GELU and LayerNorm,
    refimpl.ckks.polyeval), "spread_shared" (the paired Softmax's spreads of several values per ciphertext share
    their coarse copies, refimpl.nexus.bert.packing.spread_many), "sums_pack" (the row sums' folds packed as
    QuickMax's, refimpl.nexus.bert.packing.packed_fold), "rsqrt_carry" (a LayerNorm's 1/sqrt carried as (y, t = -u y^2 / 2)
    across its refreshes, refimpl.nexus.rsqrt_carry), "precise_variance" (with it, the variance's refresh by META-BTS),
    "ln_input_guard" (no refresh of a LayerNorm's input where its error over the smallest standard deviation would
    exceed 1e-3, refimpl.nexus.bert.chain.layernorm_pieces), "rsqrt_carry_whole" (the carried form where the
    Newton steps are not split too and the variance range is wide, refimpl.nexus.bert.chain.carry_whole); see
    `settings`."""

    config: BertConfig
    params: dict[str, np.ndarray]
    ranges: dict | None = None
    w64: dict = field(default_factory=dict, repr=False)
    options: dict = field(default_factory=dict)  # design switches (ours), see `settings`; {} = the defaults

    def __post_init__(self):
        self.w64 = {k: np.asarray(v, dtype=np.float64) for k, v in self.params.items()}
        unknown = sorted(set(self.options) - set(DESIGN_OPTIONS))
        if unknown:
            raise ValueError(f"unknown NexusModel design options {unknown}; known: {sorted(DESIGN_OPTIONS)}")
        if "classifier.weight" not in self.w64:
            raise ValueError("the encrypted forward needs a classifier head (classifier.weight)")

    def layer(self, i: int) -> dict[str, np.ndarray]:
        """Encoder layer i's float64 weights, names without the "encoder.layer.{i}." prefix."""
        p = f"encoder.layer.{i}."
        return {k[len(p):]: v for k, v in self.w64.items() if k.startswith(p)}

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
        o = {**DESIGN_OPTIONS, **self.options}  # the design switches, defaults from the one table
        B = r["score_bound"]
        act_max = max([v for k, v in r["absmax"].items() if k.endswith("act_out")] or [1.0])
        out = {"B": B, "exp_r": EXP_R if 2 * B <= 2.0**EXP_R else EXP_R + 1, "ln": {},
               "act_div": float(2.0 ** max(0, math.ceil(math.log2(act_max * SCORE_MARGIN)))),
               "gelu_prescale": gelu_prescale(r["act"]) or GELU_PRESCALES[-1],
               # ours: the scores leave Q K^T divided by 2B, the normalisation QuickMax's Sgn makes every round
               # (d / 2B) done once in the score mask: 17 levels per round instead of 18, exp takes 2B back in its
               # constant product (refimpl.nexus.softmax.exp's unit), and x - max in [-1, 0] refreshes two per
               # bootstrap even at level 0. Exact: the same polynomials of the same values.
               "score_unit": 2.0 * B if o["score_prescale"] else 1.0,
               # ours: GELU's two paired FFN chunks stay in one ciphertext through FFN2's refresh and are split after
               # it (refimpl.nexus.bert.paired.Paired.gelu_unpair): half the ciphertexts refreshed there
               "gelu_pair_refresh": bool(o["gelu_pair_refresh"]),
               # ours: the paired Softmax's running maxima two ciphertexts into one after each QuickMax round
               # (refimpl.nexus.bert.packing.pack_maxima): fewer ciphertexts in the later rounds and their refreshes
               "softmax_pack": bool(o["softmax_pack"]),
               # ours: P V rotates the skewed values of two hidden chunks at once (refimpl.nexus.bert.attention_quads)
               "pv_quads": bool(o["pv_quads"]),
               # ours: ... with the probabilities of a head of both chunks in one ciphertext, their baby steps shared
               # (attention_quads.pv_quads' shared)
               "pv_shared": bool(o["pv_shared"]),
               # ours: ... with lazy rescaling: the masks on the probabilities, one rescale pair per output chunk
               # instead of one rescale per masked rotation (attention_quads.pv_lazy; pv.mul two levels, V one)
               "pv_lazy": bool(o["pv_lazy"]),
               # ours: Q K^T on head pairs with lazy rescaling: the row mask once on the sum of the products instead
               # of on every baby step (attention.feature_products_lazy; qk three levels instead of two)
               "qk_lazy": bool(o["qk_lazy"]),
               # ours: the skews of two head pairs' keys and of two chunk pairs' values run once on one complex
               # ciphertext, split by a conjugation (refimpl.nexus.bert.attention_packed)
               "kv_complex": bool(o["kv_complex"]),
               # ours: QKV emits Q, K and V with complex outputs, K and V already packed for attention_packed
               # (refimpl.nexus.bert.qkv_packed)
               "qkv_complex": bool(o["qkv_complex"]),
               # ours: the FFN on complex-packed chunk pairs (refimpl.nexus.bert.linear_pairs): FFN1 with complex
               # outputs, Quad on the pair, FFN2 with complex inputs (where the evaluator can conjugate)
               "ffn_complex": bool(o["ffn_complex"]),
               # ours: the attention's output projection with two output chunks per ciphertext, split after it
               # (refimpl.nexus.bert.linear_pairs.split_outputs)
               "out_complex": bool(o["out_complex"]),
               # ours: lazy relinearization (refimpl.ckks.polyeval): sums of ciphertext products relinearized once,
               # in the Sgn polynomials of QuickMax and GELU, GELU's five polynomials of x and LayerNorm's squares
               "lazy_relin": bool(o["lazy_relin"]),
               # ours: the spreads of the packed maxima and row sums share their coarse copies
               # (refimpl.nexus.bert.packing.spread_many): 22 rotations instead of 47 for 6 values per ciphertext
               "spread_shared": bool(o["spread_shared"]),
               # ours: the paired Softmax's row sums folded with QuickMax's packing after each round
               # (refimpl.nexus.bert.packing.packed_fold): 6 + 3 + 2 + 1 + 1 + 1 + 1 rotations instead of 6 x 7
               "sums_pack": bool(o["sums_pack"]),
               # ours: a LayerNorm's 1/sqrt split across a refresh carries (y, t = -u y^2 / 2), t in [-1/2, 0], instead
               # of (y, -u/2) and (y, u), whose refresh lost up to 13 bits of a wide variance range
               # (refimpl.nexus.rsqrt_carry)
               "rsqrt_carry": bool(o["rsqrt_carry"]),
               # ours: with rsqrt_carry, the variance's refresh by META-BTS (two bootstraps, Forward.refresh's precise)
               "precise_variance": bool(o["precise_variance"]),
               # ours: a LayerNorm's input (x + residual) is not refreshed where that refresh's error, relative to the
               # input's bound, would reach the output above LN_INPUT_ERROR once divided by the smallest standard
               # deviation (refimpl.nexus.bert.chain.layernorm_pieces); False: any refresh point, as before
               "ln_input_guard": bool(o["ln_input_guard"]),
               # ours: with rsqrt_carry, (y, t) carried where the Newton steps are not split as well and the variance
               # range is wide, so that a refresh inside Goldschmidt's steps renews t in [-1/2, 0] instead of u
               # (refimpl.nexus.bert.chain.carry_whole): Softmax + GELU's LayerNorm 2 at BERT-base, one refresh more
               "rsqrt_carry_whole": bool(o["rsqrt_carry_whole"])}
        for name, (vlo, vhi) in r["var"].items():
            lo, hi = vlo / VAR_MARGIN, vhi * VAR_MARGIN
            alpha = 1.0 / math.sqrt(hi)
            for newton in range(NEWTON, MAX_NEWTON + 1):  # in one or two pieces (refimpl.nexus.bert.chain.layernorm_pieces)
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
        ref = plaintext_reference(model, ids, mask, approximate=False)
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
    return (max(BREAKPOINTS) - prescale, min(BREAKPOINTS) + prescale)


def gelu_prescale(act_range) -> float | None:
    """The smallest Sgn prescale of GELU_PRESCALES whose valid range holds act_range (None if none does)."""
    for c in GELU_PRESCALES:
        lo, hi = gelu_valid_range(c)
        if lo <= act_range[0] and act_range[1] <= hi:
            return c
    return None



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


