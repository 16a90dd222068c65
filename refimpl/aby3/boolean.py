"""Boolean shares and conversions: AND, A2B (Kogge-Stone), MSB (carry tree), bit injection (ABY3 §5.3, §5.4).

Boolean shares are XOR shares of uint64 words, 64 bits to a word (`nbits` tells how many
low bits are in use; the wire carries only those). An AND costs 1 round and nbits bits per
party; XOR and any fixed bit permutation (shift, select, compaction) are local.

Costs (all parties, per element, k = 64):
    and_         1 round    3 nbits bits
    a2b          8 rounds   296 B      (log2 k + 2 rounds; SPU: 336 B)
    b2a          9 rounds   312 B      (log2 k + 3 rounds)
    msb          8 rounds   ~79 B      (carry tree halving the width each level; SPU: 108 B)
    inject       2 rounds   72 B       bit x arithmetic (two 3-party OTs + reshare)
"""

from __future__ import annotations

import numpy as np

from refimpl.aby3.arith import reshare
from refimpl.aby3.fixed import U64
from refimpl.aby3.kernels import unzip_bits
from refimpl.aby3.ot import ot3_help, ot3_recv, ot3_send
from refimpl.aby3.party import Party
from refimpl.aby3.shares import AShare, BShare, check_same_run, recv_words, send_words

ONE = U64(1)
_EVEN = [U64(m) for m in (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F,
                          0x00FF00FF00FF00FF, 0x0000FFFF0000FFFF, 0x00000000FFFFFFFF)]


def _mask(nbits: int) -> np.uint64:
    return U64(0xFFFFFFFFFFFFFFFF) if nbits >= 64 else U64((1 << nbits) - 1)


# ---- local operations --------------------------------------------------------------------

def xor(p: Party, x: BShare, y: BShare) -> BShare:
    """[x ^ y]: local."""
    check_same_run(p, x, y)
    return BShare(x.a ^ y.a, x.b ^ y.b, p.session, max(x.nbits, y.nbits))


def xor_public(p: Party, x: BShare, c) -> BShare:
    """[x ^ c] for public words c: c goes into component x_0 (parties 0 and 2)."""
    c = np.asarray(c, dtype=U64)
    a = x.a ^ c if p.id == 0 else x.a
    b = x.b ^ c if p.id == 2 else x.b
    return BShare(*np.broadcast_arrays(a, b), p.session, x.nbits)


def not_bit(p: Party, x: BShare) -> BShare:
    """[1 ^ x] for a 1-bit sharing."""
    return xor_public(p, x, ONE)


def shift_left(x: BShare, s: int) -> BShare:
    m = _mask(x.nbits)
    return BShare((x.a << U64(s)) & m, (x.b << U64(s)) & m, x.session, x.nbits)


def bit(x: BShare, j: int) -> BShare:
    """Bit j of each word as a 1-bit sharing (local)."""
    return BShare((x.a >> U64(j)) & ONE, (x.b >> U64(j)) & ONE, x.session, 1)


def compact_even(v: np.ndarray) -> np.ndarray:
    """Bits 0, 2, 4, ... of each word moved to positions 0, 1, 2, ... (a fixed bit permutation): the numpy
    form of kernels.unzip_bits' even half, kept as its readable oracle."""
    v = v & _EVEN[0]
    for s, m in zip((1, 2, 4, 8, 16), _EVEN[1:]):
        v = (v | (v >> U64(s))) & m
    return v


def _unzip(x: BShare) -> tuple[BShare, BShare]:
    """(even bits, odd bits) of each word, each compacted to nbits/2 bits: local."""
    h = x.nbits // 2
    (ea, oa), (eb, ob) = unzip_bits(x.a), unzip_bits(x.b)  # numba; same as compact_even
    return BShare(ea, eb, x.session, h), BShare(oa, ob, x.session, h)


# ---- AND --------------------------------------------------------------------------------

def and_(p: Party, x: BShare, y: BShare) -> BShare:
    """[x & y]: z_i = x_i y_i ^ x_i y_{i+1} ^ x_{i+1} y_i ^ beta_i, then reshare; 1 round (ABY3 §3.2)."""
    check_same_run(p, x, y)
    nb = max(x.nbits, y.nbits)
    m = _mask(nb)
    z = ((x.a & y.a) ^ (x.a & y.b) ^ (x.b & y.a) ^ p.prss.zero_xor(x.shape)) & m
    # party i holds z_i; sends z_i to party i-1 (only the nbits in use cross the wire)
    send_words(p, p.prev, z, nb)
    return BShare(z, recv_words(p, p.next, z.shape, nb), p.session, nb)


def and_many(p: Party, pairs: list[tuple[BShare, BShare]]) -> list[BShare]:
    """Several ANDs of the same width in one round (one message per party)."""
    nb = max(max(x.nbits, y.nbits) for x, y in pairs)
    sizes = [x.a.size for x, _ in pairs]
    cat = lambda parts: np.concatenate([v.ravel() for v in parts])  # noqa: E731
    xs = BShare(cat([x.a for x, _ in pairs]), cat([x.b for x, _ in pairs]), p.session, nb)
    ys = BShare(cat([y.a for _, y in pairs]), cat([y.b for _, y in pairs]), p.session, nb)
    z = and_(p, xs, ys)
    out, o = [], 0
    for (x, _), n in zip(pairs, sizes):
        out.append(BShare(z.a[o:o + n].reshape(x.shape), z.b[o:o + n].reshape(x.shape), p.session, nb))
        o += n
    return out


# ---- arithmetic -> boolean ----------------------------------------------------------------

def _a2b_operands(p: Party, x: AShare) -> tuple[BShare, BShare]:
    """x = x_0 + (x_1 + x_2) as two boolean-shared words; 1 round, party 1 sends 8 B.

    [x_0]^B = (x_0, 0, 0) needs nothing (parties 0 and 2 know x_0). Party 1 knows
    s = x_1 + x_2 and shares it as (0, s ^ r, r) with r from the key of parties 1 and 2:
    party 1 sends s ^ r to party 0. Reference: ABY3 §5.3 (bit decomposition).
    """
    z = np.zeros(x.shape, dtype=U64)
    if p.id == 0:
        a = BShare(x.a, z, p.session)  # (x_0, 0)
        s = BShare(z, p.net.recv(1), p.session)  # (0, s ^ r)
    elif p.id == 1:
        a = BShare(z, z, p.session)
        r = p.prss.pair(2, x.shape)
        sr = (x.a + x.b) ^ r
        p.net.send(0, sr)  # party 1 holds (s ^ r, r); sends s ^ r to party 0
        s = BShare(sr, r, p.session)
    else:
        a = BShare(z, x.b, p.session)  # (0, x_0)
        s = BShare(p.prss.pair(1, x.shape), z, p.session)  # (r, 0)
    return a, s


def _kogge_stone(p: Party, a: BShare, s: BShare) -> BShare:
    """[a + s]^B for boolean-shared 64-bit words: 1 + log2(64) rounds.

    G = a & s, P = a ^ s; for sh = 1, 2, 4, ..., 32: G ^= P & (G << sh), P &= P << sh;
    sum = (a ^ s) ^ (G << 1). Reference: Kogge and Stone (1973); ABY3 §5.3.
    """
    g = and_(p, a, s)
    p0 = xor(p, a, s)
    pp = p0
    for sh in (1, 2, 4, 8, 16, 32):
        if sh < 32:
            pg, pp = and_many(p, [(pp, shift_left(g, sh)), (pp, shift_left(pp, sh))])
        else:
            pg = and_(p, pp, shift_left(g, sh))  # last level: P is no longer needed
        g = xor(p, g, pg)
    return xor(p, p0, shift_left(g, 1))


def a2b(p: Party, x: AShare) -> BShare:
    """[x]^A -> [x]^B with a Kogge-Stone adder of x_0 and x_1 + x_2: log2(64) + 2 = 8 rounds.

    Reference: ABY3 §5.3 (bit decomposition); Kogge and Stone (1973).
    """
    check_same_run(p, x)
    with p.net.scope("a2b"):
        a, s = _a2b_operands(p, x)
        return _kogge_stone(p, a, s)


def b2a(p: Party, x: BShare) -> AShare:
    """[x]^B -> [x]^A: log2(64) + 3 = 9 rounds, 312 B (ABY3 §5.3; SPU B2AByPPA).

    y_1 (key of parties 0, 1) and y_2 (key of parties 1, 2) are random; party 1 shares
    -(y_1 + y_2) as a boolean word (1 message), a Kogge-Stone adder gives
    [y_0]^B = [x - y_1 - y_2]^B, and y_0 is opened to parties 0 and 2 (one word each).
    Result: party i holds (y_i, y_{i+1}).
    """
    check_same_run(p, x)
    with p.net.scope("b2a"):
        z = np.zeros(x.shape, dtype=U64)
        if p.id == 0:
            y1 = p.prss.pair(1, x.shape)
            m = BShare(z, p.net.recv(1), p.session)  # (0, s ^ r)
        elif p.id == 1:
            y1, y2 = p.prss.pair(0, x.shape), p.prss.pair(2, x.shape)
            r = p.prss.pair(2, x.shape)
            sr = (U64(0) - y1 - y2) ^ r
            p.net.send(0, sr)  # party 1 holds (s ^ r, r) of s = -(y_1 + y_2); sends s ^ r to party 0
            m = BShare(sr, r, p.session)
        else:
            y2 = p.prss.pair(1, x.shape)
            m = BShare(p.prss.pair(1, x.shape), z, p.session)  # (r, 0)
        y0 = _kogge_stone(p, BShare(x.a, x.b, p.session), m)
        # open y_0 to parties 0 and 2: party 0 holds (c_0, c_1) and needs c_2 (from party 2);
        # party 2 holds (c_2, c_0) and needs c_1 (from party 0)
        if p.id == 0:
            p.net.send(2, y0.b)
            return AShare(y0.a ^ y0.b ^ p.net.recv(2), y1, p.session)
        if p.id == 2:
            p.net.send(0, y0.a)
            return AShare(y2, y0.a ^ y0.b ^ p.net.recv(0), p.session)
        return AShare(y1, y2, p.session)


def msb(p: Party, x: AShare) -> BShare:
    """[msb(x)]^B (1 bit): msb(a) ^ msb(b) ^ carry into bit 63 of a + b, a = x_0, b = x_1 + x_2.

    The carry comes from a carry tree over the low 63 bits (shifted up by one, so the
    lowest group is (G, P) = (0, 0)): each level pairs odd and even positions,
    G = G_odd ^ P_odd G_even, P = P_odd P_even, halving the width: 64 -> 1 in 6 levels.
    8 rounds; 24 + 24 + 12 + 6 + 3 + 1.5 + 0.4 B (+ 8 B to share b) per element.
    Reference: ABY3 §5.3; SPU msb_a2b (carry_a2b).
    """
    check_same_run(p, x)
    with p.net.scope("msb"):
        a, s = _a2b_operands(p, x)
        top = BShare((a.a ^ s.a) >> U64(63), (a.b ^ s.b) >> U64(63), p.session, 1)
        a1, s1 = shift_left(a, 1), shift_left(s, 1)
        g = and_(p, a1, s1)
        pp = xor(p, a1, s1)
        while g.nbits > 1:
            ge, go = _unzip(g)
            pe, po = _unzip(pp)
            if g.nbits > 2:
                pg, pp = and_many(p, [(po, ge), (po, pe)])
            else:
                pg = and_(p, po, ge)
            g = xor(p, go, pg)
        return xor(p, top, g)


# ---- bit injection -------------------------------------------------------------------------

def inject(p: Party, b: BShare, x: AShare) -> AShare:
    """[b x]^A for a 1-bit boolean b and arithmetic x; 2 rounds, 72 B per element (ABY3 §5.4).

    Split x b = x_1 (b_2 ^ c) + (x_0 + x_2)(b_1 ^ d) with c = b_0 ^ b_1, d = b_0 ^ b_2:
      OT-A: sender party 0 (knows x_1, c), choice b_2 (parties 1, 2): receiver 1, helper 2;
      OT-B: sender party 2 (knows x_0 + x_2, d), choice b_1 (parties 0, 1): receiver 0, helper 1;
    each sender masks with private randomness r, giving a 3-of-3 sharing, then reshare.
    """
    check_same_run(p, b, x)
    if b.nbits != 1:
        raise ValueError(f"inject needs a 1-bit sharing, got nbits = {b.nbits}")
    b_a, b_b = np.broadcast_to(b.a, x.shape), np.broadcast_to(b.b, x.shape)
    with p.net.scope("inject"):
        if p.id == 0:  # holds (x_0, x_1), (b_0, b_1)
            c = b_a ^ b_b
            r = p.private(x.shape)
            ot3_send(p, receiver=1, helper=2, m0=x.b * c - r, m1=x.b * (c ^ ONE) - r)  # OT-A
            z = r + ot3_recv(p, sender=2, helper=1, c=b_b)  # OT-B, choice b_1
        elif p.id == 1:  # holds (x_1, x_2), (b_1, b_2)
            ot3_help(p, sender=2, receiver=0, c=b_a)  # OT-B helper, choice b_1
            z = ot3_recv(p, sender=0, helper=2, c=b_b)  # OT-A, choice b_2
        else:  # holds (x_2, x_0), (b_2, b_0)
            d = b_a ^ b_b
            g = x.a + x.b
            r = p.private(x.shape)
            ot3_help(p, sender=0, receiver=1, c=b_a)  # OT-A helper, choice b_2
            ot3_send(p, receiver=0, helper=1, m0=g * d - r, m1=g * (d ^ ONE) - r)  # OT-B
            z = r
        return reshare(p, z + p.prss.zero(x.shape))


def public_share(p: Party, c: np.ndarray) -> AShare:
    """The trivial sharing (c, 0, 0) of public ring elements c (no communication)."""
    c = np.asarray(c, dtype=U64)
    z = np.zeros_like(c)
    return AShare(c if p.id == 0 else z, c if p.id == 2 else z, p.session)
