"""EvalMod: the homomorphic reduction modulo q_0 of the bootstrapping.

Input: slots y = t / (K q_0) in [-1, 1] with t = Delta m + e + q_0 I, |I| < K. Output:
    (q_0 / (2 pi Delta)) sin(2 pi K y) = (q_0 / (2 pi Delta)) sin(2 pi t / q_0) ~ m,
since sin(2 pi (I + eps)) = sin(2 pi eps) ~ 2 pi eps for eps = (Delta m + e) / q_0 small (the
relative error is (2 pi eps)^2 / 6). The sine is computed as a cosine with a phase shift,
    sin(2 pi K y) = cos(2 pi (K y - 1/4)) = cos(2^r theta), theta = 2 pi (K y - 1/4) / 2^r,
by a Chebyshev interpolant of cos(theta(y)) on [-1, 1] and r double-angle steps
cos(2 a) = 2 cos(a)^2 - 1. The factor q_0 / (2 pi Delta) is folded into the scale (free).

Reference: Cheon et al., EUROCRYPT 2018, section 4.3; Han and Ki, CT-RSA 2020 (cosine and
double angle); Bossuat et al., EUROCRYPT 2021 (K from the secret's Hamming weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import erfc, pi, sqrt

import numpy as np

from ..ciphertext import Ciphertext
from ..polyeval import chebyshev_interpolate, evaluate_chebyshev, poly_depth


def k_from_hamming_weight(h: int, N: int, log2_failure: float = -40.0) -> tuple[int, float]:
    """The smallest K with P(some |I_k| >= K - 1/2) <= 2^log2_failure over N coefficients.

    I_k is a sum of h + 1 uniform [-1/2, 1/2] terms: sd sqrt((h + 1) / 12); Gaussian tail."""
    sd = sqrt((h + 1) / 12)
    K = 1
    while True:
        p = N * erfc((K - 0.5) / (sd * sqrt(2)))
        if p <= 2.0**log2_failure or K > 10_000:
            return K, float(np.log2(max(p, 1e-300)))
        K += 1


@dataclass(frozen=True)
class EvalModConfig:
    K: int
    degree: int
    double_angle: int

    @property
    def depth(self) -> int:
        return poly_depth(self.degree) + self.double_angle


@lru_cache(maxsize=None)
def cosine_coefficients(K: int, degree: int, r: int) -> tuple[np.ndarray, float]:
    """Chebyshev coefficients of cos(2 pi (K y - 1/4) / 2^r) on y in [-1, 1], and the error."""
    f = lambda y: np.cos(2 * pi * (K * y - 0.25) / 2**r)  # noqa: E731
    return chebyshev_interpolate(f, -1.0, 1.0, degree)


def eval_mod(ev, ct: Ciphertext, cfg: EvalModConfig, q0: int, delta: float) -> Ciphertext:
    """y = t / (K q_0) in the slots -> m = (q_0 / (2 pi delta)) sin(2 pi K y)."""
    coeffs, _ = cosine_coefficients(cfg.K, cfg.degree, cfg.double_angle)
    p = ct.params
    # target the scale of the prime that each following square divides by: the scale stays put
    out_level = ct.level - poly_depth(cfg.degree)
    target = float(p.q[out_level]) if cfg.double_angle else ct.scale
    # eager (lazy=False): the path of the measured bootstraps (results/ckks); lazy relinearization would save
    # key switches here too, unmeasured so far
    c, _ = evaluate_chebyshev(ev, ct, coeffs, target_scale=target, lazy=False)
    for _ in range(cfg.double_angle):  # cos(2a) = 2 cos(a)^2 - 1; level l -> l-1
        sq = ev.rescale(ev.square(c))
        c = ev.add_const(ev.mul_int(sq, 2), -1.0)
    # c holds sin(2 pi K y) at scale S; read it as (q0 / (2 pi delta)) sin(...) at scale S / factor
    factor = q0 / (2 * pi * delta)  # eval_mod_scale repeats these scale operations
    return Ciphertext(c.c, c.level, c.scale / factor, c.params)


def eval_mod_scale(p, level: int, scale: float, cfg: EvalModConfig, q0: int, delta: float) -> float:
    """The scale of eval_mod's output for an input at `level` and `scale`, by the same float
    operations eval_mod's evaluator performs (ours: it lets the bootstrapper know SlotsToCoeffs'
    encoding scales before any ciphertext exists, to encode its diagonals ahead of time)."""
    out_level = level - poly_depth(cfg.degree)
    s = float(p.q[out_level]) if cfg.double_angle else float(scale)
    for i in range(cfg.double_angle):  # square (scale s * s) then rescale by q at its level
        s = s * s / p.q[out_level - i]
    return s / (q0 / (2 * pi * delta))
