"""Hybrid key switching (dnum digits, special modulus P).

Given d under s' at level l (NTT over Q_l), produce (u_0, u_1) over Q_l with
u_0 + u_1 s = d s' + e_ks:
  1. ModUp: for each digit D_j, extend [d]_{Q_j} from its own primes to every other prime of
     Q_l P by fast base conversion (the approximate lift adds a multiple of Q_j, which the
     gadget factor annihilates).
  2. Inner product with the key: acc_0 = sum_j ext_j b_j, acc_1 = sum_j ext_j a_j over Q_l P.
  3. ModDown: divide both by P, back to Q_l.
Step 1 depends only on d, so several automorphisms of one ciphertext share it (hoisting):
sigma_k commutes with the lift, so ext_j of sigma_k(d) is sigma_k(ext_j) (a permutation, which
the inner product applies as it reads the digits).

Steps 1 and 2 run as the fused kernels of `refimpl.ring.hybrid` (ours: the same residues in
fewer passes over memory).

Reference: Han and Ki, CT-RSA 2020, section 3; Halevi and Shoup, "Faster homomorphic linear
transformations in HElib", CRYPTO 2018 (hoisting); Bossuat et al., EUROCRYPT 2021.
"""

from __future__ import annotations

from math import prod

import numpy as np

from ..ring.automorphism import ntt_permutation
from ..ring.hybrid import inner_product, mod_up_plan
from .errors import KeyLevelError
from .keys import SwitchingKey, digits_at
from .params import Parameters


def mod_up(params: Parameters, d: np.ndarray, level: int) -> np.ndarray:
    """Digit decomposition of d (NTT over Q_l), each digit lifted to Q_l P (NTT): [digits, l + 1 + |P|, N]."""
    ctx = params.ctx
    ql = params.q_basis(level)
    owns = tuple(tuple(i for i in params.digits[j] if i <= level) for j in digits_at(params, level))
    return mod_up_plan(ctx, ql + params.p_basis, owns).run(d, ctx.intt(d, ql))


def switch_extended(params: Parameters, exts: np.ndarray, key: SwitchingKey, level: int,
                    galois: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """sum_j sigma(ext_j) (b_j, a_j) over Q_l P, before ModDown: about P times the switched pair.

    exts: the digits of `mod_up` at this level; galois: k of an automorphism sigma_k applied to
    the digits first (hoisted rotations), None for none."""
    if level > key.level:
        raise KeyLevelError(f"a switching key for levels <= {key.level} cannot switch a ciphertext at level {level}: "
                            f"generate it with level >= {level}")
    full = params.q_basis(level) + params.p_basis
    held = digits_at(params, key.level)
    js = [held.index(digit) for digit in digits_at(params, level)]  # exts: the digits that meet q_0..q_l
    perm = None if galois is None else ntt_permutation(galois, params.N)
    return inner_product(params.ctx, exts, [key.b[j] for j in js], [key.a(j) for j in js], key.row_index(full), full, perm)


def apply_key(params: Parameters, exts: np.ndarray, key: SwitchingKey, level: int,
              galois: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(u_0, u_1) = ModDown(sum_j sigma(ext_j) (b_j, a_j)): the switched pair over Q_l (NTT)."""
    acc0, acc1 = switch_extended(params, exts, key, level, galois)
    u = params.ctx.mod_down_many((acc0, acc1), params.q_basis(level), params.p_basis)
    return u[0], u[1]


def times_p(params: Parameters, c: np.ndarray, level: int) -> np.ndarray:
    """c (over Q_l) times P, over Q_l P: the rows of P are 0. A ciphertext lifted to Q_l P so
    that ModDown (division by P) gives it back exactly."""
    ctx, ql = params.ctx, params.q_basis(level)
    out = np.zeros((len(ql) + len(params.p_basis), params.N), dtype=np.uint64)
    out[: len(ql)] = ctx.mul_int(c, prod(params.p), ql)
    return out


def key_switch(params: Parameters, d: np.ndarray, key: SwitchingKey, level: int) -> tuple[np.ndarray, np.ndarray]:
    """(u_0, u_1) with u_0 + u_1 s ~ d s' (s' the key's source secret)."""
    return apply_key(params, mod_up(params, d, level), key, level)
