"""Rotations in the extended basis Q_l P (double hoisting, Bossuat et al. EUROCRYPT 2021) decrypt
as the ordinary ones once brought down (spec: CKKS-KS-1, CKKS-BOOT-C2S/S2C)."""

import numpy as np

from test_evaluator import bits, logn


def test_extended_rotations_come_down_to_rotations(kit):
    """ModDown(rotate_hoisted_extended(ct, r)) decrypts to rot(z, r), r = 0 included."""
    z = kit.random_slots()
    ct = kit.encrypt(z)
    for r, (x0, x1) in kit.ev.rotate_hoisted_extended(ct, [0, 1, -7]).items():
        assert x0.shape == (ct.level + 1 + len(kit.p.p), kit.p.N)
        out = kit.ev.mod_down_extended(x0, x1, ct.level, ct.scale)
        assert bits(kit.decrypt(out) - np.roll(z, -r)) >= 40 - (logn(kit) + 8)


def test_giant_step_in_the_extended_basis(kit):
    """A baby rotation by 1, a plaintext product in Q_l P, a giant rotation by 5, ModDown and
    rescale: rot(w * rot(z, 1), 5) at level l - 1 and scale Delta."""
    ev, p = kit.ev, kit.p
    z, w = kit.random_slots(), kit.random_slots()
    ct = kit.encrypt(z)
    level, full = ct.level, p.q_basis(ct.level) + p.p_basis
    x0, x1 = ev.rotate_hoisted_extended(ct, [1])[1]
    pt = ev.encoder.encode_extended(w, level, float(p.q[level]))
    y0, y1 = ev.rotate_extended(p.ctx.mul(x0, pt, full), p.ctx.mul(x1, pt, full), level, 5)
    out = ev.rescale(ev.mod_down_extended(y0, y1, level, ct.scale * float(p.q[level])))
    assert out.level == level - 1 and abs(out.scale / ct.scale - 1) < 1e-12
    assert bits(kit.decrypt(out) - np.roll(w * np.roll(z, -1), -5)) >= 40 - (logn(kit) + 10)
