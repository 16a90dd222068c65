"""Hybrid key switching (dnum digits, special modulus P).

Given d under s' at level l (NTT over Q_l), produce (u_0, u_1) over Q_l with
u_0 + u_1 s = d s' + e_ks:
  1. ModUp: for each digit D_j, extend [d]_{Q_j} from its own primes to every other prime of
     Q_l P by fast base conversion (the approximate lift adds a multiple of Q_j, which the
     gadget factor annihilates).
  2. Inner product with the key: acc_0 = sum_j ext_j b_j, acc_1 = sum_j ext_j a_j over Q_l P.
  3. ModDown: divide both by P, back to Q_l.
Step 1 depends only on d, so several automorphisms of one ciphertext share it (hoisting):
sigma_k commutes with the lift, so ext_j of sigma_k(d) is sigma_k(ext_j) (a permutation).

Reference: Han and Ki, CT-RSA 2020, section 3; Halevi and Shoup, "Faster homomorphic linear
transformations in HElib", CRYPTO 2018 (hoisting); Bossuat et al., EUROCRYPT 2021.
"""

from __future__ import annotations

import numpy as np

from ..ring.automorphism import automorphism_ntt
from .errors import KeyLevelError
from .keys import SwitchingKey, digits_at
from .params import Parameters


def mod_up(params: Parameters, d: np.ndarray, level: int) -> list[np.ndarray]:
    """Digit decomposition of d (NTT over Q_l), each digit lifted to Q_l P (NTT)."""
    ctx = params.ctx
    ql = params.q_basis(level)
    full = ql + params.p_basis
    d_coeff = ctx.intt(d, ql)
    exts = []
    for digit in params.digits:
        own = tuple(i for i in digit if i <= level)
        if not own:
            continue
        others = tuple(i for i in full if i not in own)
        conv = ctx.converter(own, others).convert(np.ascontiguousarray(d_coeff[list(own)]))
        conv = ctx.ntt(conv, others)
        ext = np.empty((len(full), params.N), dtype=np.uint64)
        pos = {g: r for r, g in enumerate(full)}
        ext[[pos[i] for i in own]] = d[list(own)]
        ext[[pos[i] for i in others]] = conv
        exts.append(ext)
    return exts


def apply_key(params: Parameters, exts: list[np.ndarray], key: SwitchingKey, level: int) -> tuple[np.ndarray, np.ndarray]:
    """(u_0, u_1) = ModDown(sum_j ext_j (b_j, a_j)): the switched pair over Q_l (NTT)."""
    if level > key.level:
        raise KeyLevelError(f"a switching key for levels <= {key.level} cannot switch a ciphertext at level {level}: "
                            f"generate it with level >= {level}")
    ctx = params.ctx
    ql = params.q_basis(level)
    full = ql + params.p_basis
    rows = key.row_index(full)
    acc0 = np.zeros((len(full), params.N), dtype=np.uint64)
    acc1 = np.zeros_like(acc0)
    held = digits_at(params, key.level)
    for ext, digit in zip(exts, digits_at(params, level)):  # exts: the digits that meet q_0..q_l
        j = held.index(digit)
        ctx.mul_acc_rows(acc0, ext, key.b[j], full, rows)
        ctx.mul_acc_rows(acc1, ext, key.a(j), full, rows)
    return ctx.mod_down(acc0, ql, params.p_basis), ctx.mod_down(acc1, ql, params.p_basis)


def key_switch(params: Parameters, d: np.ndarray, key: SwitchingKey, level: int) -> tuple[np.ndarray, np.ndarray]:
    """(u_0, u_1) with u_0 + u_1 s ~ d s' (s' the key's source secret)."""
    return apply_key(params, mod_up(params, d, level), key, level)


def permute_digits(exts: list[np.ndarray], k: int) -> list[np.ndarray]:
    """sigma_k applied to hoisted digits (NTT-domain permutation)."""
    return [automorphism_ntt(e, k) for e in exts]
