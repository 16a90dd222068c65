"""The encrypted BERT as a chain of pieces, and its bootstrapping plan.

The forward is a chain of pieces (qkv, qk, QuickMax rounds, exp, inverse, ..., LayerNorm in four
pieces, FFN, activation) with level costs, widths (ciphertexts alive) and joins (the residual,
x - max, e / sum); `plan` places the bootstraps on it with refimpl.ckks.bootstrap.placement.place
(the fewest ciphertexts refreshed; objective and program ours) and the forward follows the plan,
checking the level after every piece. The level costs are those of the NEXUS blocks
(refimpl.nexus.softmax, layernorm, gelu, sign, folding).

Reference: NEXUS (Zhang et al., NDSS 2025) §3-4.
"""

from __future__ import annotations

import math
from functools import lru_cache

from ...ckks import Parameters
from ...ckks.bootstrap.bootstrapper import BOOTSTRAP_PRESETS, bootstrap_preset
from ...ckks.bootstrap.placement import Block, Piece, greedy, place
from ..folding import round_levels
from ..gelu import LEVELS as GELU_LEVELS
from .. import rsqrt_carry
from ..layernorm import GOLDSCHMIDT
from ..sign import sgn_levels
from ..softmax import goldschmidt_iterations, inverse_levels
from .attention import applies as diagonal_applies
from .attention_quads import applies as quads_apply
from .layout import LOGIT_BOUND, QUAD_ROOT, Layout, input_layout, pair_attention_applies
from .packing import joint_gelu, packed_sums, quickmax_widths, spread_shared, sum_levels
from .ranges import NexusModel, gelu_valid_range

NEWTON_PER_PIECE = 8  # more Newton steps than this go in two pieces, with a possible refresh between them
# ours: a LayerNorm input's refresh is allowed where bound x 2^-LN_GUARD_BITS / sigma min <= LN_INPUT_ERROR; 19 bits:
# below the mean precision of 128-2^16-dense19's bootstrap (about 20), the noise probe's model of it
LN_GUARD_BITS, LN_INPUT_ERROR = 19, 1e-3
# ours (option rsqrt_carry_whole): an unsplit 1/sqrt is carried as (y, t) where a refresh of (y, u) inside
# Goldschmidt's steps would leave y a relative error above LN_CARRY_ERROR, (hi / lo) 2^-LN_GUARD_BITS / 2 (u refreshed
# by its bound hi, its values down to lo). Chosen between the shipped models' ranges at BERT-base: Softmax + GELU's
# LayerNorm 2 (hi / lo = 693: 6.6e-4, the refresh that dominated its error) is carried; the LayerNorms 1 (10 and 23:
# 1e-5 and 2.2e-5) are not, where the carried form's two earlier levels would cost the student a refresh per layer
LN_CARRY_ERROR = 1e-4


def pieces_of(model: NexusModel, lay: Layout, argmax: bool = False) -> list[Piece]:
    """The encrypted forward as a chain of pieces (level costs, widths, joins, bounds), in the
    order `Forward.run` enters them: per layer QKV, Q K^T, Softmax (QuickMax rounds, exp,
    inverse, normalize) or 2Quad, P V, output, LayerNorm 1, FFN1, activation, FFN2, LayerNorm 2;
    then the head and optionally Argmax."""
    cfg, st, r = model.config, model.settings(), model.get_ranges()
    ch, ci, sw = lay.chunks(lay.d), lay.chunks(lay.intermediate), lay.score_cts  # sw: the score stream's ciphertexts
    B = st["B"]
    am = r["absmax"]
    out = []
    for i in range(cfg.num_hidden_layers):
        p = f"L{i}."
        out.append(Piece(p + "qkv", 1, ch, need=3, bound=am.get(f"L{i}.x", 4.0)))
        out.append(Piece(p + "qk", qk_levels(st, lay), ch, bootable=False))
        if cfg.attention == "softmax":
            rounds = lay.n_pad.bit_length() - 1
            Bs = B / st["score_unit"]  # the scores' bound as carried (ours: divided by 2B, see NexusModel.settings)
            # ours: with pair_rows the running maxima packed two ciphertexts into one after each round but the last
            # (refimpl.nexus.bert.packing.pack_maxima: 1 level)
            packed = lay.pair_rows and st["softmax_pack"]
            widths = quickmax_widths(sw, rounds) if packed else [sw] * rounds
            for k in range(rounds):
                pack = int(k + 1 < rounds and widths[k + 1] < widths[k])
                out.append(Piece(p + f"softmax.round{k}", round_levels(Bs) + pack, widths[k], bound=Bs, coarse_ok=k > 0))
            if lay.pair_rows:  # the maximum from the row's first slot over the row (refimpl.nexus.bert.packing.spread)
                out.append(Piece(p + "softmax.spread", 2 if spread_shared(st, lay) else 1, widths[-1] if widths else sw,
                                 bound=Bs, coarse_ok=True))  # spread_shared: packing.spread_many, 2 levels
            k_inv = goldschmidt_iterations(0.5, float(lay.n_pad))
            out.append(Piece(p + "softmax.exp", st["exp_r"] + 1, sw, need=st["exp_r"] + 2,
                             join=("in", p + "softmax.round0", 0), bound=2 * Bs, coarse_ok=True))
            if packed_sums(st, lay):  # ours: the row sums packed into one ciphertext (1 level), spread after the inverse
                out.append(Piece(p + "softmax.sum", sum_levels(st, lay), sw, bound=float(lay.n_pad)))
            out.append(Piece(p + "softmax.inverse", inverse_levels(k_inv) + int(lay.pair_rows),
                             1 if packed_sums(st, lay) else sw, bound=float(lay.n_pad)))  # pair_rows: a spread (1 level)
            out.append(Piece(p + "softmax.normalize", 1, sw, join=("out", p + "softmax.exp", 0), bootable=False,
                             product_join=True))
        else:
            a = cfg.freediv[0]  # (s + c) / sqrt(f(n)) with f(n) >= f(1) = a
            out.append(Piece(p + "2quad", 1, sw, bound=(B + cfg.quad_c) / math.sqrt(a)))
        out.append(Piece(p + "pv.mask", 1, sw, need=2,
                         bound=1.0 if cfg.attention == "softmax" else (B + cfg.quad_c) ** 2 / cfg.freediv[0]))
        # V at QKV's output level; the diagonal P V skews it first (one more level: refimpl.nexus.bert.attention), the
        # P V on chunk pairs masks the rotated skew too (one more: refimpl.nexus.bert.attention_quads)
        out.append(Piece(p + "pv.mul", pv_mul_levels(st, lay), ch, join=("in", p + "qkv", pv_join(st, lay)),
                         bootable=False, product_join=True))
        out.append(Piece(p + "out", 1, ch, bound=am.get(f"L{i}.ctx", 4.0)))
        out += layernorm_pieces(p + "ln1", st["ln"][p + "ln1"], ch, lay.d, ("in", p + "qkv", 0), am.get(f"L{i}.sum1", 16.0),
                                st["rsqrt_carry"], st["precise_variance"], st["ln_input_guard"], st["rsqrt_carry_whole"])
        out.append(Piece(p + "ffn1", 1, ch, bound=am.get(f"L{i}.h1", 4.0)))
        # ours: the FFN on complex-packed chunk pairs (refimpl.nexus.bert.linear_pairs): Quad's and FFN2's inputs two
        # chunks a + i b per ciphertext (|a + i b| <= sqrt 2 max(|a|, |b|); Quad's carry (a + i b) / 2)
        cq = -(-ci // 2) if st["ffn_complex"] else ci
        if cfg.activation == "quad":
            out.append(Piece(p + "quad", 1, cq, bound=am.get(f"L{i}.act_in", 8.0) * QUAD_ROOT / math.sqrt(st["act_div"])))
        else:
            # two FFN chunks per GELU ciphertext (refimpl.nexus.bert.packing.pair_chunks)
            out.append(Piece(p + "gelu", GELU_LEVELS, -(-ci // 2), bound=max(abs(v) for v in gelu_valid_range(st["gelu_prescale"]))))
            if joint_gelu(st, lay):  # ... and still paired through a refresh, split after it (ours)
                out.append(Piece(p + "gelu.unpair", 1, -(-ci // 2), bound=1.0))
        out.append(Piece(p + "ffn2", 1, cq, bound=math.sqrt(2.0) if st["ffn_complex"] else 1.0))  # activation / act_div
        out += layernorm_pieces(p + "ln2", st["ln"][p + "ln2"], ch, lay.d, ("in", p + "ffn1", 0), am.get(f"L{i}.sum2", 16.0),
                                st["rsqrt_carry"], st["precise_variance"], st["ln_input_guard"], st["rsqrt_carry_whole"])
    out.append(Piece("head", 1, ch, bound=am.get(f"L{cfg.num_hidden_layers}.x", 4.0)))
    if argmax:
        out.append(Piece("argmax.compact", 1, 1, bound=LOGIT_BOUND))
        for k in range(lay.label_pad.bit_length() - 1):
            out.append(Piece(f"argmax.round{k}", round_levels(LOGIT_BOUND), 1, bound=LOGIT_BOUND, coarse_ok=k > 0))
        out.append(Piece("argmax.sgn", sgn_levels(2 * LOGIT_BOUND), 1, join=("in", "argmax.round0", 0),
                         bound=2 * LOGIT_BOUND, coarse_ok=True))
    return out


def pv_join(settings: dict, lay: Layout) -> int:
    """Levels between QKV's input and V where P V multiplies it: 3 with refimpl.nexus.bert.attention_quads (the model
    option pv_quads, where it applies; 2 with its lazy rescaling, the option pv_lazy: the rotated skew is not masked),
    2 with the diagonal P V (refimpl.nexus.bert.attention), else 1."""
    if settings["pv_quads"] and quads_apply(lay):
        return 2 if settings["pv_lazy"] else 3
    return 2 if diagonal_applies(lay) else 1


def qk_levels(settings: dict, lay: Layout) -> int:
    """Levels of the piece qk: 3 with the head pairs' lazy rescaling (the model option qk_lazy, where head pairs apply:
    attention.feature_products_lazy, the row mask after the products), else 2."""
    return 3 if settings["qk_lazy"] and pair_attention_applies(lay) else 2


def pv_mul_levels(settings: dict, lay: Layout) -> int:
    """Levels of the piece pv.mul from the probabilities: 2 with attention_quads' lazy rescaling (the model option
    pv_lazy: the masks on the probabilities, the product rescaled after them), else 1."""
    return 2 if settings["pv_quads"] and settings["pv_lazy"] and quads_apply(lay) else 1


def layernorm_pieces(name: str, ln: tuple, width: int, d: int, join: tuple, bound: float,
                     carry: bool = False, precise: bool = False, guard: bool = False,
                     whole: bool = False) -> list[Piece]:
    """LayerNorm as four pieces, so that a refresh may sit inside it (MiniLM's variance ranges need
    up to 7 Newton steps: 3 + 1 + 14 + 5 = 23 levels, more than a bootstrap returns):
    x + residual -> centred and squared sums (2) | guess + Newton (1 + 2 newton) on the variance |
    Goldschmidt (1 + 2 G) on (y, u) | gamma (x - mu) y + beta (1, a product with the centred stream).
    carry (ours, refimpl.nexus.rsqrt_carry), where the Newton steps are split: (y, t = -u y^2 / 2) instead of
    (y, -u/2) and (y, u): t in [-1/2, 0] is refreshed by the bound 1/2 (u's refresh lost up to 13 bits of
    a wide variance range), and the pieces take 2 + 2 first, 2 rest and 2 G - 1 levels.
    guard (ours, option ln_input_guard): no refresh of the input where its error, bound x 2^-LN_GUARD_BITS, divided
    by the smallest standard deviation sqrt(lo) / alpha, exceeds LN_INPUT_ERROR (at BERT-base the student's
    LayerNorm 2 input, bound 791 and sigma down to 0.55: layer 0 came out 0.0138 from the model).
    whole (ours, option rsqrt_carry_whole, with carry): the carried form where the Newton steps are not split too and
    the variance range is wide (`carry_whole`), so that a refresh inside Goldschmidt's steps renews (y, t) rather than
    (y, u): the same levels in all, 2 more in the first piece and 2 fewer in Goldschmidt's; the variance's refresh as
    without it (no META-BTS)."""
    alpha, lo, hi, newton = ln
    input_refresh = not guard or bound * 2.0**-LN_GUARD_BITS * alpha / math.sqrt(lo) <= LN_INPUT_ERROR
    first, rest = newton_split(newton, carry)
    y_bound = max(1.0, 1.5 / math.sqrt(lo))
    if carry and (rest or carry_whole(ln, whole)):
        c_rsqrt, c_newton, c_gold = rsqrt_carry.levels(first, rest, GOLDSCHMIDT)
        yb, tb = rsqrt_carry.bounds(lo)
        return [Piece(name, 2, width, join=join, bound=bound, bootable=input_refresh),
                # precise (ours, option precise_variance): the variance's refresh by META-BTS, two bootstraps, its error
                # relative to 1 instead of its bound d hi (its values reach down to d lo)
                Piece(name + ".rsqrt", c_rsqrt, 1, bound=d * hi, precise=precise and bool(rest)),
                *([Piece(name + ".newton", c_newton, 2, bound=yb, bounds=(yb, tb))] if rest else []),
                Piece(name + ".gold", c_gold, 2, bound=yb, bounds=(yb, tb)),
                Piece(name + ".out", 1, width, join=("in", name, 2), bootable=False, product_join=True)]
    return [Piece(name, 2, width, join=join, bound=bound, bootable=input_refresh),
            Piece(name + ".rsqrt", 1 + 2 * first, 1, bound=d * hi),
            # more than NEWTON_PER_PIECE steps: the rest continue on (y, -u/2), which a refresh may renew
            *([Piece(name + ".newton", 2 * rest, 2, bound=max(y_bound, hi / 2), bounds=(y_bound, hi / 2))]
              if rest else []),
            # (y, u) are refreshed with their own bounds: scaling u <= hi by y's bound 1.5 / sqrt(lo)
            # would leave it an absolute error of that bound times the bootstrap's (relative error
            # 30 % at u = lo with 20-bit bootstrapping: 0.08 on the logits of MiniLM's second LayerNorm)
            Piece(name + ".gold", 1 + 2 * GOLDSCHMIDT, 2, bound=max(y_bound, hi), bounds=(y_bound, hi)),
            Piece(name + ".out", 1, width, join=("in", name, 2), bootable=False, product_join=True)]


def carry_whole(ln: tuple, whole: bool) -> bool:
    """Whether an unsplit 1/sqrt of variance range ln = (alpha, lo, hi, newton) is carried as (y, t) (ours, option
    rsqrt_carry_whole, with rsqrt_carry): where a refresh of u would leave y a relative error above LN_CARRY_ERROR."""
    _, lo, hi, _ = ln
    return whole and hi / lo * 2.0**-LN_GUARD_BITS / 2 > LN_CARRY_ERROR


def newton_split(newton: int, carry: bool = False) -> tuple[int, int]:
    """Newton steps of the first and the second 1/sqrt piece (second 0: one piece); carry (ours): as many in the
    first as it holds (refimpl.nexus.rsqrt_carry.split)."""
    if newton <= NEWTON_PER_PIECE:
        return newton, 0
    if carry:
        return rsqrt_carry.split(newton, NEWTON_PER_PIECE)
    return newton - newton // 2, newton // 2



def greedy_points(model: NexusModel, n: int, params, *, bootstrap_level: int | None = None) -> int:
    """Bootstrap points of refimpl.ckks.bootstrap.placement.greedy on the same chain
    (joins ignored, widths ignored): the baseline `place` is compared with."""
    p, top = bootstrap_level_of(params, bootstrap_level)
    pieces = pieces_of(model, input_layout(model.config, n, p.slots))
    return greedy([Block(pc.name, pc.cost) for pc in pieces], top, top).bootstraps


@lru_cache(maxsize=16)
def _preset_depth(params: Parameters) -> int | None:
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
    Print it with `plan_table`. Reference: NEXUS §3-4 (the blocks); the placement is ours (refimpl.ckks.bootstrap.placement)."""
    p, top = bootstrap_level_of(params, bootstrap_level)
    lay = input_layout(model.config, n, p.slots, head_rows=head_rows)
    return place(pieces_of(model, lay, argmax), top if input_level is None else input_level, top)
