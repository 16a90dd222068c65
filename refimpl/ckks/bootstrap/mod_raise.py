"""ScaleDown and ModRaise: the first step of CKKS bootstrapping.

A ciphertext at level 0 decrypts to t = Delta m + e mod q_0. ModRaise reads (c_0, c_1) mod q_0
as centred integers and re-expresses them modulo the whole chain Q_L: the result decrypts to
t + q_0 I, where I = (c_0 + c_1 s - t) / q_0 is a small integer polynomial (|I_k| <= K with
overwhelming probability; sd of I_k ~ sqrt((h + 1)/12) for a secret of Hamming weight h).
Reference: Cheon, Han, Kim, Kim, Song, EUROCRYPT 2018, section 3.1.
"""

from __future__ import annotations

import numpy as np

from ..ciphertext import Ciphertext
from ..params import Parameters


def scale_down(ev, ct: Ciphertext) -> Ciphertext:
    """Bring ct to level 0 (drop the limbs above q_0; a ciphertext that still has levels is fine)."""
    if ct.size != 2:
        ct = ev.relinearize(ct)
    return ev.drop_level(ct, 0)


def mod_raise(ct: Ciphertext, params: Parameters, level: int | None = None) -> Ciphertext:
    """Level-0 ciphertext -> the same centred integers modulo q_0 .. q_level (default: the top)."""
    if ct.level != 0:
        raise ValueError(f"mod_raise expects a level-0 ciphertext, got level {ct.level}: scale_down first")
    level = params.L if level is None else level
    ctx = params.ctx
    q0 = params.q[0]
    basis = params.q_basis(level)
    comps = []
    for c in ct.c:
        coeff = ctx.intt(c, (0,))[0].astype(np.int64)
        centred = np.where(coeff > q0 // 2, coeff - q0, coeff)  # in (-q0/2, q0/2]
        comps.append(ctx.ntt(ctx.from_int(centred, basis), basis))
    return Ciphertext(tuple(comps), level, ct.scale, params)
