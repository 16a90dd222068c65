"""PRSS and the counting network (spec/aby3.md ABY3-PRSS-1, ABY3-NET-1)."""

import numpy as np
import pytest

from refimpl.aby3 import arith
from refimpl.aby3.network import LAN, WAN, ProtocolError
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import share_input


def test_prss_zero_shares_sum_to_zero_and_pairs_agree():
    """ABY3-PRSS-1: alpha_0 + alpha_1 + alpha_2 = 0, beta_0 ^ beta_1 ^ beta_2 = 0, pair keys agree."""
    def prog(p):
        return p.prss.zero((1000,)), p.prss.zero_xor((1000,)), p.prss.pair(p.next, (5,)), p.prss.pair(p.prev, (5,))

    out = simulate(prog, insecure_seed=4).outputs
    assert np.all(out[0][0] + out[1][0] + out[2][0] == 0)
    assert np.all(out[0][1] ^ out[1][1] ^ out[2][1] == 0)
    assert not np.all(out[0][0] == 0)
    for i in range(3):  # party i's key with i+1 is party i+1's key with i
        assert np.array_equal(out[i][2], out[(i + 1) % 3][3])


def test_round_clock_counts_the_critical_path():
    """ABY3-NET-1: rounds = depth of the message graph; bytes = array bytes; sends per party."""
    x = np.arange(6.0)

    def prog(p):
        a = share_input(p, 0, x if p.id == 0 else None)
        with p.net.scope("seq"):
            b = arith.mul(p, a, a)
            arith.mul(p, b, b)  # depends on b: 2 rounds
        with p.net.scope("par"):
            arith.mul(p, a, a)
            arith.mul(p, a, a)  # independent: the clock does not wait, but a party sends twice
        return None

    res = simulate(prog)
    assert res.scope("seq") == {"bytes": 2 * 24 * 6, "rounds": 2, "sends": 2}
    assert res.scope("par")["bytes"] == 2 * 24 * 6 and res.scope("par")["sends"] == 2
    assert res.rounds == 1 + 2 + 2  # input sharing, then the two scopes in sequence
    assert [n.bytes_sent for n in res.nets] == [2 * 48 + 4 * 48, 4 * 48, 4 * 48]


def test_mismatched_protocol_steps_are_detected():
    """ABY3-NET-1: parties running different steps get a ProtocolError, not a silent wrong answer."""
    def prog(p):
        a = share_input(p, 0, np.ones(3) if p.id == 0 else None)
        with p.net.scope("mul" if p.id else "other"):
            return arith.reshare(p, a.a)

    with pytest.raises(ProtocolError, match="not running the same protocol step"):
        simulate(prog)


def test_latency_model():
    """ABY3-NET-2: t = compute + rounds RTT + max party bytes / bandwidth (stated parameters)."""
    assert LAN.estimate(1.0, 10, 10**9) == pytest.approx(1.0 + 10 * 1e-4 + 0.8)
    assert WAN.estimate(0.0, 2, 0) == pytest.approx(0.08)


def test_wire_packing_roundtrip_and_size():
    """ABY3-NET-1: only the nbits in use cross the wire: ceil(n nbits / 8) bytes below 8 bits,
    ceil(nbits / 8) bytes per value from 8 bits up; pack/unpack is the identity."""
    from refimpl.aby3.shares import pack, unpack

    rng = np.random.default_rng(1)
    for nb in range(1, 65):
        for n in (1, 5, 17, 300):
            w = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n, dtype=np.uint64)
            w &= np.uint64((1 << nb) - 1) if nb < 64 else np.uint64(2**64 - 1)
            data = pack(w, nb)
            assert np.array_equal(unpack(data, w.shape, nb), w)
            assert data.nbytes == (-(-n * nb // 8) if nb < 8 else n * -(-nb // 8))
