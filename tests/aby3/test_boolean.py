"""Boolean shares and conversions (spec/aby3.md ABY3-AND-1, ABY3-A2B-1, ABY3-MSB-1, ABY3-INJ-1)."""

import galois
import numpy as np
from hypothesis import given, strategies as st

from refimpl.aby3 import boolean as B
from refimpl.aby3.fixed import Fxp
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import BShare, reveal, reveal_bool, share_input

F = Fxp()
GF2 = galois.GF(2)


def run_bool(fn, x, seed=0):
    """Share x from party 0, apply fn(p, share) -> BShare, open it; returns (value, cost of fn)."""
    def prog(p):
        s = share_input(p, 0, x if p.id == 0 else None)
        with p.net.scope("op"):
            y = fn(p, s)
        return reveal_bool(p, y)

    res = simulate(prog, insecure_seed=seed)
    return res.outputs[0], res.scope("op")


def test_and_matches_gf2_product():
    """ABY3-AND-1: AND of boolean shares is the GF(2) product of the bits, 1 round, 3 x 64 bits."""
    rng = np.random.default_rng(0)
    xa, ya = rng.normal(size=50) * 100, rng.normal(size=50) * 100

    def prog(p):
        x = B.a2b(p, share_input(p, 0, xa if p.id == 0 else None))
        y = B.a2b(p, share_input(p, 0, ya if p.id == 0 else None))
        with p.net.scope("op"):
            z = B.and_(p, x, y)
        return reveal_bool(p, x), reveal_bool(p, y), reveal_bool(p, z)

    res = simulate(prog)
    x, y, z = res.outputs[0]
    bits = lambda v: GF2(((v[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(int))  # noqa: E731
    assert np.array_equal(bits(z), bits(x) * bits(y))
    assert res.scope("op") == {"bytes": 3 * 8 * 50, "rounds": 1, "sends": 1}


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=40), st.integers(0, 1000))
def test_a2b_gives_twos_complement_bits(xs, seed):
    """ABY3-A2B-1: A2B opens to the 64-bit two's complement encoding; log2(64) + 2 rounds, 296 B."""
    x = np.array(xs)
    out, cost = run_bool(B.a2b, x, seed)
    assert np.array_equal(out, F.encode(x))
    assert cost == {"bytes": 296 * x.size, "rounds": 8, "sends": 8}


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=40), st.integers(0, 1000))
def test_msb_is_sign(xs, seed):
    """ABY3-MSB-1: MSB = [x < 0] (of the encoding) in 8 rounds and < 80 B per element."""
    x = np.array(xs)
    out, cost = run_bool(B.msb, x, seed)
    assert np.array_equal(out, (F.encode(x).view(np.int64) < 0).astype(np.uint64))
    assert cost["rounds"] == 8
    n = x.size  # party 1 shares x_1 + x_2 (8 B); per party: G (64 bits), then 2 x 32, 16, 8, 4, 2 bits, 1 bit
    assert cost["bytes"] == 8 * n + 3 * (8 * n + 8 * n + 4 * n + 2 * n + n + -(-n // 2) + -(-n // 8))


def test_msb_edge_values():
    """ABY3-MSB-1: the carry tree at the edges of the range and at zero."""
    x = np.array([0.0, -1 / 2**18, 1 / 2**18, F.max_abs * 0.999, -F.max_abs * 0.999, -0.0])
    out, _ = run_bool(B.msb, x)
    assert list(out) == [0, 1, 0, 0, 1, 0]


def test_inject_bit_times_value():
    """ABY3-INJ-1: bit injection [b][x] = b x exactly; 2 rounds, 72 B per element."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=200) * 1000
    bsel = rng.integers(0, 2, 200).astype(np.uint64)

    def prog(p):
        xs = share_input(p, 0, x if p.id == 0 else None)
        bs = share_input(p, 0, bsel if p.id == 0 else None, raw=True)
        bb = B.bit(B.a2b(p, bs), 0)  # a 1-bit boolean sharing of bsel
        with p.net.scope("op"):
            y = B.inject(p, bb, xs)
        return reveal(p, y)

    res = simulate(prog)
    assert np.array_equal(res.outputs[0], np.rint(x * 2**18) / 2**18 * bsel)
    assert res.scope("op") == {"bytes": 72 * 200, "rounds": 2, "sends": 3}


def test_xor_public_and_not():
    x = np.array([1.0, -1.0])

    def f(p, s):
        return B.not_bit(p, B.msb(p, s))

    out, _ = run_bool(f, x)
    assert list(out) == [1, 0]
    assert isinstance(BShare(np.zeros(1, np.uint64), np.zeros(1, np.uint64), 0), BShare)


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=40), st.integers(0, 1000))
def test_b2a_inverts_a2b(xs, seed):
    """ABY3-B2A-1: B2A(A2B(x)) = x; log2(64) + 3 = 9 rounds, 312 B per element."""
    x = np.array(xs)

    def prog(p):
        s = B.a2b(p, share_input(p, 0, x if p.id == 0 else None))
        with p.net.scope("op"):
            y = B.b2a(p, s)
        return reveal(p, y)

    res = simulate(prog, insecure_seed=seed)
    assert np.array_equal(res.outputs[0], np.rint(x * 2**18) / 2**18)
    assert res.scope("op") == {"bytes": 312 * x.size, "rounds": 9, "sends": 8}


def test_unzip_kernel_matches_numpy_compaction():
    """The numba bit unzip equals the numpy magic-mask compaction (its slow oracle)."""
    from refimpl.aby3.boolean import compact_even
    from refimpl.aby3.kernels import unzip_bits

    w = np.random.default_rng(0).integers(0, 2**63, 1000, dtype=np.uint64) * np.uint64(3)
    ev, od = unzip_bits(w)
    assert np.array_equal(ev, compact_even(w)) and np.array_equal(od, compact_even(w >> np.uint64(1)))
    bits = (w[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    assert np.array_equal(ev, (bits[:, 0::2] << np.arange(32, dtype=np.uint64)).sum(1, dtype=np.uint64))
