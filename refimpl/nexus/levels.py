"""Level and scale bookkeeping shared by the NEXUS blocks.

CKKS scales are tracked exactly (refimpl.ckks), so two ciphertexts that meet in an addition
must agree on level and scale. `align` brings one to a lower (level, scale) exactly at the
cost of one constant product from one level above the target (free in levels when the
ciphertext is higher anyway); `times_at` and `multiply_lower` are the constant and
ciphertext products the blocks chain; `ensure_levels` calls the bootstrapper when a block would not
fit in what is left.
"""

from __future__ import annotations

from ..ckks import Ciphertext

SCALE_RTOL = 1e-9


def with_scale(ct: Ciphertext, scale: float) -> Ciphertext:
    """Declare a scale equal to ct's up to float rounding (checked)."""
    if abs(ct.scale - scale) > SCALE_RTOL * scale:
        raise ValueError(f"internal: scale 2^{ct.scale:.6e} is not {scale:.6e}")
    return Ciphertext(ct.c, ct.level, scale, ct.params)


def align(ev, ct: Ciphertext, level: int, scale: float) -> Ciphertext:
    """ct at exactly (level, scale): drop to level + 1, times 1 at scale s q / ct.scale, rescale.

    Level l > level -> level; an error if ct is already below `level` (bootstrap first)."""
    if ct.level < level:
        raise ValueError(f"align: ciphertext at level {ct.level} is below the target level {level}")
    if abs(ct.scale - scale) <= SCALE_RTOL * scale:
        return with_scale(ev.drop_level(ct, level), scale)
    if ct.level == level:
        raise ValueError(f"align: scales differ at level {level} and no level is left to fix them")
    up = ev.drop_level(ct, level + 1)
    fixed = ev.rescale(ev.mul_const(up, 1.0, scale=scale * float(ev.params.q[level + 1]) / up.scale))
    return with_scale(fixed, scale)  # level + 1 -> level, scale exactly `scale`


def times_at(ev, ct: Ciphertext, c, level: int, scale: float) -> Ciphertext:
    """c ct (c a scalar or slot vector) at exactly (level, scale), from ct at a higher level
    (one constant product at level + 1, rescaled)."""
    up = ev.drop_level(ct, level + 1)
    out = ev.rescale(ev.mul_const(up, c, scale=scale * float(ev.params.q[level + 1]) / up.scale))
    return with_scale(out, scale)


def multiply_lower(ev, a: Ciphertext, b: Ciphertext) -> Ciphertext:
    """a b at the lower of their levels, rescaled (level -1)."""
    lvl = min(a.level, b.level)
    return ev.rescale(ev.multiply(ev.drop_level(a, lvl), ev.drop_level(b, lvl)))  # level lvl -> lvl-1


def ensure_levels(ct: Ciphertext, need: int, bootstrapper, what: str) -> Ciphertext:
    """ct itself if it has `need` levels left, else bootstrapper.bootstrap(ct) (an error without one)."""
    if ct.level >= need:
        return ct
    if bootstrapper is None:
        raise ValueError(f"{what} needs {need} levels, the ciphertext is at level {ct.level}: pass a bootstrapper")
    out = bootstrapper.bootstrap(ct)
    if out.level < need:
        raise ValueError(f"{what} needs {need} levels but the bootstrapper refreshes to level {out.level} only")
    return out
