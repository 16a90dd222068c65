"""GELU by the paper's 4-piece approximation (NEXUS §3.3).

    GELU(x) ~ 0 (x < -4),  P(x) on [-4, -1.95],  Q(x) on (-1.95, 3],  x (x > 3)
    P(x) = sum_{i<=3} c_i x^i,  Q(x) = sum_{i<=6} d_i x^i  (refimpl/constants.toml [nexus.gelu])

Segment bits b_i = Sgn((x - t_i) / 16) / 2 in [-1/2, 1/2] for t = (-4, -1.95, 3); the
indicator of [t_0, t_1] is b_0 - b_1, of [t_1, t_2] b_1 - b_2, of x > t_2 b_2 + 1/2:
    GELU(x) = P(x) (b_0 - b_1) + Q(x) (b_1 - b_2) + x (b_2 + 1/2).
Valid inputs: (x - t_i) / 16 in [-1, 1] for every t_i, i.e. x in [-13, 12]. Near a
breakpoint (|x - t_i| < 16 * 0.0174 = 0.28) the Sgn is not saturated and neighbouring pieces
blend; they agree there to within the approximation's own error.

Levels: Sgn 17 (16 + the affine map (x - t)/16), P and Q (degree 3 and 6 on [-13, 12])
3 and 4 levels in parallel, one product: 18 levels (as the official code's GELU).

Reference: NEXUS §3.3 (Zhang et al., NDSS 2025); the coefficients are Bumblebee/PUMA's seg4
GELU; official code in its paper-era version.
"""

from __future__ import annotations

import numpy as np

from ..ckks import Ciphertext
from ..ckks.polyeval import evaluate_power_many
from ..constants import C
from .levels import align, with_scale
from .sign import first_coefficients, sgn_levels, sgn_plain, sgn_rest

G = C["nexus"]["gelu"]
BREAKPOINTS = tuple(float(t) for t in G["breakpoints"])  # -4, -1.95, 3
SGN_PRESCALE = float(G["sgn_prescale"])  # 16
VALID_RANGE = tuple(float(v) for v in G["valid_range"])  # [-13, 12]
P = np.array(G["P"], dtype=np.float64)  # x^0 .. x^3
Q = np.array(G["Q"], dtype=np.float64)  # x^0 .. x^6
LEVELS = sgn_levels(SGN_PRESCALE, BREAKPOINTS[0]) + 1  # 18


def check_range(lo: float, hi: float) -> None:
    """Raise if [lo, hi] leaves the valid input range [-13, 12] of the 4-piece GELU."""
    if lo < VALID_RANGE[0] or hi > VALID_RANGE[1]:
        raise ValueError(
            f"GELU inputs in [{lo}, {hi}] leave the valid range {list(VALID_RANGE)} "
            f"(every (x - t)/{SGN_PRESCALE:g} must lie in [-1, 1]): scale the preceding layer"
        )


def gelu_plain(x: np.ndarray) -> np.ndarray:
    """The float64 model of `gelu`: the same segment bits (the Sgn polynomial) and pieces."""
    b = [sgn_plain((x - t) / SGN_PRESCALE, 0.5) for t in BREAKPOINTS]
    p = np.polynomial.polynomial.polyval(x, P)
    q = np.polynomial.polynomial.polyval(x, Q)
    return p * (b[0] - b[1]) + q * (b[1] - b[2]) + x * (b[2] + 0.5)


def segments_and_pieces(ev, ct: Ciphertext, lo: float, hi: float, prescale: float,
                        bit_scale: float, lazy: bool = True) -> tuple[list[Ciphertext], Ciphertext, Ciphertext]:
    """The segment bits b_i = Sgn((x - t_i) / prescale) / 2 (level -17, scale bit_scale) and the pieces P(x)
    (level -3) and Q(x) (level -4, both at ct's scale) of x in [lo, hi].

    The five polynomials of the same x (the three Sgn first steps g4((x - t_i) / prescale), P and Q) share one
    affine map and one set of Chebyshev powers on [lo, hi] (ours: refimpl.ckks.polyeval.evaluate_power_many;
    12 ciphertext products instead of 25, the same polynomials and levels as separate evaluations). lazy: lazy
    relinearization in all of them (ours, refimpl.ckks.polyeval: 45 key switches instead of 57; False: the
    previous path)."""
    firsts = [first_coefficients(prescale, t) for t in BREAKPOINTS]
    outs, _ = evaluate_power_many(ev, ct, firsts + [P, Q], lo, hi, lazy=lazy)
    bits = [sgn_rest(ev, y, factor=0.5, target_scale=bit_scale, lazy=lazy) for y in outs[:3]]  # level -17
    return bits, outs[3], outs[4]


def gelu(ev, ct: Ciphertext, lo: float = VALID_RANGE[0], hi: float = VALID_RANGE[1], lazy: bool = True) -> Ciphertext:
    """P(x) (b_0 - b_1) + Q(x) (b_1 - b_2) + x (b_2 + 1/2), b_i = Sgn((x - t_i)/16)/2 (NEXUS §3.3).

    Args: ct at level l >= 18, inputs in [lo, hi] within [-13, 12] (checked); lazy: lazy relinearization (ours):
    the polynomials' (`segments_and_pieces`) and the three final products summed before one relinearization;
    False: the previous path, every product relinearized.
    Returns level l - 18, scale ct.scale."""
    check_range(lo, hi)
    s, lvl = ct.scale, ct.level - (LEVELS - 1)  # the segment bits land at level l - 17
    q_lvl = float(ev.params.q[lvl])
    bits, p, q = segments_and_pieces(ev, ct, lo, hi, SGN_PRESCALE, q_lvl, lazy)
    ind_p = ev.sub(bits[0], bits[1])
    ind_q = ev.sub(bits[1], bits[2])
    ind_x = ev.add_const(bits[2], 0.5)
    terms = [ev.multiply(align(ev, v, lvl, s), ind, relinearize=not lazy) for v, ind in ((p, ind_p), (q, ind_q), (ct, ind_x))]
    total = ev.add(ev.add(terms[0], terms[1]), terms[2])  # scale s q_lvl at level l-17
    return with_scale(ev.rescale(ev.relinearize(total)), s)  # level l-17 -> l-18, scale s
