"""Arithmetic on replicated shares: local linear ops, mul, matmul, truncations (ABY3 §3, §5.1).

Conventions: party i holds (x_i, x_{i+1}); a public constant c is added to component x_0
(held by parties 0 and 2). A "3-of-3" value is one ring element per party, z_0 + z_1 + z_2;
every multiplication first produces one (local cross terms plus a PRSS zero share).

Costs (all parties, per output element; k = 64, d-bit truncation, d <= 32):
    mul, matmul           1 round   3 x 8 B = 24 B   (matmul: independent of the inner dimension)
    truncate_share        1 round   8 B              ABY3 share truncation I (can fail: see below)
    truncate              1 round   26 B             wrap-corrected, never fails, error < 1 ulp (unbiased)
    fxp_mul / fxp_matmul  2 rounds  42 B             fused: 3-of-3 -> 2-of-2 (16 B) -> truncate
(SPU 0.9.5, measured: truncation 28 B / 2 rounds, fxp mul 52 B / 3 send actions.)
"""

from __future__ import annotations

import numpy as np

from refimpl.aby3.fixed import U64
from refimpl.aby3.kernels import matmul_u64
from refimpl.aby3.ot import ot3_help, ot3_recv, ot3_send
from refimpl.aby3.party import Party
from refimpl.aby3.shares import AShare, check_same_run

LIFT = U64(1 << 62)  # x + 2^62 is in [0, 2^63) when |x| < 2^62: its MSB is 0


# ---- local operations --------------------------------------------------------------------

def _check(p: Party, *xs) -> None:
    check_same_run(p, *xs)
    shapes = [x.shape for x in xs if isinstance(x, AShare)]
    if len(set(shapes)) > 1:
        raise ValueError(f"party {p.id}: shares of different shapes {shapes} (broadcast explicitly)")


def add(p: Party, x: AShare, y: AShare) -> AShare:
    """[x + y]: component-wise, local."""
    _check(p, x, y)
    return AShare(x.a + y.a, x.b + y.b, p.session)


def sub(p: Party, x: AShare, y: AShare) -> AShare:
    """[x - y]: local."""
    _check(p, x, y)
    return AShare(x.a - y.a, x.b - y.b, p.session)


def neg(p: Party, x: AShare) -> AShare:
    return AShare(U64(0) - x.a, U64(0) - x.b, p.session)


def add_raw(p: Party, x: AShare, c) -> AShare:
    """[x + c] for a public ring element (array) c: added to component x_0 (parties 0 and 2)."""
    c = np.asarray(c, dtype=U64)
    a, b = x.a, x.b
    if p.id == 0:
        a = a + c  # party 0 holds (x_0, x_1)
    elif p.id == 2:
        b = b + c  # party 2 holds (x_2, x_0)
    a, b = np.broadcast_arrays(a, b)
    return AShare(np.ascontiguousarray(a), np.ascontiguousarray(b), p.session)


def add_public(p: Party, x: AShare, c) -> AShare:
    """[x + c] for a public real c (encoded at p.fxp.f fraction bits)."""
    return add_raw(p, x, p.fxp.encode(c))


def mul_int(p: Party, x: AShare, c) -> AShare:
    """[c x] for a public integer (array) c: local."""
    c = np.asarray(c)
    if c.dtype.kind == "f":
        if not np.all(c == np.rint(c)):
            raise ValueError("mul_int needs integer constants; use mul_public for reals")
        c = c.astype(np.int64)
    cu = c.astype(np.int64).view(U64) if c.dtype.kind == "i" else c.astype(U64)
    return AShare(x.a * cu, x.b * cu, p.session)


def lshift(p: Party, x: AShare, s: int) -> AShare:
    """[x 2^s]: local."""
    return AShare(x.a << U64(s), x.b << U64(s), p.session)


def own(x: AShare) -> np.ndarray:
    """Party i's component x_i: the replicated share read as a 3-of-3 value (local)."""
    return x.a


def sum_axis(p: Party, x: AShare, axis: int = -1, keepdims: bool = False) -> AShare:
    """[sum of x along axis]: local."""
    return AShare(x.a.sum(axis=axis, keepdims=keepdims, dtype=U64),
                  x.b.sum(axis=axis, keepdims=keepdims, dtype=U64), p.session)


# ---- multiplication ---------------------------------------------------------------------

def reshare(p: Party, z: np.ndarray) -> AShare:
    """3-of-3 z (already masked by a zero share) -> replicated: party i sends z_i to party i-1."""
    # party i holds z_i; sends z_i to party i-1, receives z_{i+1} from party i+1
    p.net.send(p.prev, z)
    return AShare(z, p.net.recv(p.next), p.session)


def mul_local(p: Party, x: AShare, y: AShare) -> np.ndarray:
    """z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + alpha_i: a 3-of-3 sharing of x y (ABY3 §3.1)."""
    _check(p, x, y)
    return x.a * y.a + x.a * y.b + x.b * y.a + p.prss.zero(x.shape)


def mul(p: Party, x: AShare, y: AShare) -> AShare:
    """[x y] with no truncation (scale adds up); 1 round, 1 ring element per party (ABY3 §3.1)."""
    with p.net.scope("mul"):
        return reshare(p, mul_local(p, x, y))


def matmul_local(p: Party, x: AShare, y: AShare) -> np.ndarray:
    """z_i = X_i (Y_i + Y_{i+1}) + X_{i+1} Y_i + alpha_i: 3-of-3 sharing of X Y (ABY3 §5.1 matmul)."""
    check_same_run(p, x, y)
    if x.shape[-1] != y.shape[-2] or x.shape[:-2] != y.shape[:-2]:
        raise ValueError(f"matmul shapes do not match: {x.shape} @ {y.shape}")
    z = matmul_u64(x.a, y.a + y.b)
    matmul_u64(x.b, y.a, out=z)
    return z + p.prss.zero(z.shape)


def matmul(p: Party, x: AShare, y: AShare) -> AShare:
    """[X Y] (no truncation); 1 round, 1 ring element per output element per party."""
    with p.net.scope("matmul"):
        return reshare(p, matmul_local(p, x, y))


# ---- truncation -------------------------------------------------------------------------

def _signed_shift(v: np.ndarray, d: int) -> np.ndarray:
    return (v.view(np.int64) >> np.int64(d)).view(U64)


def truncate_share(p: Party, x: AShare, d: int) -> AShare:
    """ABY3 share truncation I (§5.1): [x / 2^d]; 1 round, one ring element sent by one party.

    View x = x_0 + (x_1 + x_2) as a 2-of-2 sharing: parties 0, 2 know x_0, party 1 knows
    x_1 + x_2. Each shifts its part (arithmetic shift); party 1 re-randomizes with r from
    the key it shares with party 2 and sends (x_1 + x_2) >> d - r to party 0:
        y_0 = x_0 >> d,  y_1 = (x_1 + x_2) >> d - r,  y_2 = r.
    Error: -1, 0 or +1 ulp, except that the two halves wrap around 2^64 with probability
    about |x| / 2^63 (then the result is off by about 2^(64-d)): fine for |x| << 2^63,
    not for 2f-scaled products of large values (see `truncate`).
    """
    with p.net.scope("truncate_share"):
        if p.id == 1:
            r = p.prss.pair(2, x.shape)
            y1 = _signed_shift(x.a + x.b, d) - r
            p.net.send(0, y1)  # party 1 holds (y_1, y_2); sends y_1 to party 0
            return AShare(y1, r, p.session)
        if p.id == 2:
            return AShare(p.prss.pair(1, x.shape), _signed_shift(x.b, d), p.session)
        return AShare(_signed_shift(x.a, d), p.net.recv(1), p.session)


def _trunc_2of2(p: Party, a: np.ndarray | None, b: np.ndarray | None, d: int, shape: tuple) -> AShare:
    """[(a + b) / 2^d] from a 2-of-2 sharing a (parties 0 and 2) + b (party 1); 1 round, 8 + 6 ceil(d/8) B.

    With x' = a + b + 2^62 in [0, 2^63) (i.e. |a + b| < 2^62), a' = a + 2^62, u = msb(a'),
    v = msb(b), the wrap a' + b >= 2^64 happens exactly when u OR v, so
        x' >> d = a' >> d + b >> d - 2^(64-d) (u + v - u v)  (- 1 ulp carry, probabilistic)
    u v is the only cross term: party 1 sends it through two 3-party OTs (choice u, known to
    parties 0 and 2; one OT to each) masked by r' (private to party 1), d bits each:
        m_u = 2^(64-d) (u v - r'),   y_0 = a' >> d - 2^(64-d) u - 2^(62-d) + 1 + m_u
        y_1 = b >> d - 2^(64-d) v + 2^(64-d) r' - rho,   y_2 = rho   (rho: key of parties 1, 2)
    Parties 0 and 2 each learn m_u (uniform, masked by r'); party 0 learns y_1 (masked by rho).
    The + 1 makes the result floor(x / 2^d) + 1 - carry: it is x / 2^d rounded up with
    probability frac(x / 2^d) and down otherwise (unbiased; exact when 2^d divides x).
    Reference: the wrap identity of SecureQ8/Cheetah truncation, with ABY3 §5.4.1 OTs.
    """
    if not 1 <= d <= 61:
        raise ValueError(f"truncation by d = {d} bits: supported 1 <= d <= 61")
    up = U64(64 - d)
    md = U64((1 << d) - 1)
    if p.id == 1:
        v = b >> U64(63)
        rho = p.prss.pair(2, shape)  # key k_2 with party 2 (drawn first, as party 2 does)
        rp = p.private(shape) & md
        m0 = (U64(0) - rp) & md  # u = 0: 2^(64-d) (0 - r')
        m1 = (v - rp) & md  # u = 1: 2^(64-d) (v - r')
        ot3_send(p, receiver=0, helper=2, m0=m0, m1=m1, nbits=d)  # OT to party 0
        ot3_send(p, receiver=2, helper=0, m0=m0, m1=m1, nbits=d)  # OT to party 2
        y1 = (b >> U64(d)) - (v << up) + (rp << up) - rho
        p.net.send(0, y1)  # party 1 holds (y_1, y_2); sends y_1 to party 0
        return AShare(y1, rho, p.session)
    a2 = a + LIFT
    u = a2 >> U64(63)
    y0 = (a2 >> U64(d)) - (u << up) - U64(1 << (62 - d)) + U64(1)  # + 1: unbiased rounding
    if p.id == 0:
        ot3_help(p, sender=1, receiver=2, c=u, nbits=d)
        mu = ot3_recv(p, sender=1, helper=2, c=u, nbits=d)
        y1 = p.net.recv(1)
        return AShare(y0 + (mu << up), y1, p.session)  # party 0 holds (y_0, y_1)
    rho = p.prss.pair(1, shape)
    ot3_help(p, sender=1, receiver=0, c=u, nbits=d)
    mu = ot3_recv(p, sender=1, helper=0, c=u, nbits=d)
    return AShare(rho, y0 + (mu << up), p.session)  # party 2 holds (y_2, y_0)


def truncate(p: Party, x: AShare, d: int | None = None) -> AShare:
    """[x / 2^d] (default d = f), 1 round, 26 B per element at d = 18; needs |x| < 2^62; error < 1 ulp.

    2-of-2 view x = (x_0 + c) (parties 0, 2) + (x_1 + x_2 - c) (party 1), then
    `_trunc_2of2`; c is a public coin, so that the low bits of the two halves are uniform
    even when the shares are not (e.g. after a product by a public even integer).
    """
    d = p.fxp.f if d is None else d
    check_same_run(p, x)
    with p.net.scope("truncate"):
        c = p.prss.public(x.shape)
        if p.id == 1:
            return _trunc_2of2(p, None, x.a + x.b - c, d, x.shape)
        return _trunc_2of2(p, (x.a if p.id == 0 else x.b) + c, None, d, x.shape)


def trunc3(p: Party, z: np.ndarray, d: int) -> AShare:
    """[z / 2^d] for a 3-of-3 z (masked by a zero share): 2 rounds, 16 + 26 = 42 B per element (d = 18).

    The zero share must be added last (after any product by public constants), so that
    z_0 + z_2 is uniform: that is what hides z and makes the rounding unbiased.

    Round 1: parties 0 and 2 swap z_0 and z_2, so a = z_0 + z_2 (parties 0, 2), b = z_1 (party 1).
    Round 2: `_trunc_2of2`. This fuses a product with its truncation (no reshare needed).
    """
    with p.net.scope("trunc3"):
        if p.id == 1:
            return _trunc_2of2(p, None, z, d, z.shape)
        other = 2 if p.id == 0 else 0
        p.net.send(other, z)  # party 0 sends z_0 to party 2, party 2 sends z_2 to party 0
        a = z + p.net.recv(other)
        return _trunc_2of2(p, a, None, d, z.shape)


def fxp_mul(p: Party, x: AShare, y: AShare) -> AShare:
    """Fixed-point [x y] = trunc_f(x y): 2 rounds, 42 B per element (SPU: 52 B, 3 send actions)."""
    with p.net.scope("fxp_mul"):
        return trunc3(p, mul_local(p, x, y), p.fxp.f)


def fxp_matmul(p: Party, x: AShare, y: AShare) -> AShare:
    """Fixed-point [X Y]: 2 rounds, 42 B per output element, independent of the inner dimension."""
    with p.net.scope("fxp_matmul"):
        return trunc3(p, matmul_local(p, x, y), p.fxp.f)


def coef_bits(c, f: int) -> int:
    """Fraction bits t <= f that encode every constant in c exactly, else f."""
    c = np.atleast_1d(np.asarray(c, dtype=np.float64))
    for t in range(f + 1):
        if np.all(c * 2.0**t == np.rint(c * 2.0**t)):
            return t
    return f


def mul_public(p: Party, x: AShare, c, *, t: int | None = None) -> AShare:
    """[c x] for public reals c (broadcast to x): local product by round(c 2^t), one truncation by t.

    t defaults to the fewest bits that make c exact (0: no truncation at all), at most f.
    """
    c = np.asarray(c, dtype=np.float64)
    t = coef_bits(c, p.fxp.f) if t is None else t
    cu = np.broadcast_to(np.rint(c * 2.0**t).astype(np.int64).view(U64), x.shape)
    y = AShare(x.a * cu, x.b * cu, p.session)
    return y if t == 0 else truncate(p, y, t)
