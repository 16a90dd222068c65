"""The packings of refimpl.nexus.bert.packing (ours) on a real small ring (N = 2^11) against numpy: two heads' rows
per ciphertext and the spread of a row's first slot, two FFN chunks per ciphertext; the paired Softmax's float64
model against exact softmax and the paper's duplicated QuickMax."""

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.ckks.keys import conjugation_element
from refimpl.nexus.bert import packing as pk
from refimpl.nexus.bert.paired import Paired
from refimpl.nexus.bert.reference import softmax_model
from refimpl.nexus.counting import CountingEvaluator
from refimpl.ring.sampling import RandomSource
from tests.nexus.helpers import Kit

N_PAD, W = 16, 64  # rows of 16 keys, token windows of 64 slots: 16 windows in 1024 slots


@pytest.fixture(scope="module")
def kit():
    p = Parameters.create(N=2048, levels=3, log_q0=50, log_qi=36, log_p=50, insecure=True)
    return Kit(p, rotations=[-N_PAD, N_PAD, 3, *(-(1 << k) for k in range(4)), *(1 << k for k in range(4))])


class Lay:
    slots, window, n = 1024, W, 12


def test_pair_rows_and_spread(kit):
    """NEXUS-BERT-PACKING: two heads' rows in one ciphertext (1 rotation), the second apart again (1 level, 1
    rotation), and each row's first slot spread over its n_pad slots (1 level, log2 n_pad rotations)."""
    ev, rng = kit.ev, kit.rng
    rows = [np.zeros((16, W)) for _ in range(2)]
    for r in rows:
        r[:12, :N_PAD] = rng.uniform(-1, 1, (12, N_PAD))
    cts = [kit.encrypt(r.ravel()) for r in rows]
    (z,) = pk.pair_rows(ev, cts, N_PAD)
    want = rows[0] + np.roll(rows[1], N_PAD, axis=1)
    assert np.max(np.abs(kit.decrypt(z).reshape(16, W) - want)) < 1e-6
    mask = np.zeros((16, W))
    mask[:12, :N_PAD] = 1.0
    a, b = pk.unpair_rows(ev, z, mask.ravel(), N_PAD, True)
    for got, r in zip((a, b), rows):
        assert np.max(np.abs(kit.decrypt(got).reshape(16, W) - r)) < 1e-5
    s = pk.spread(ev, z, pk.starts(Lay, N_PAD), N_PAD)
    got = kit.decrypt(s).reshape(16, W)
    want = np.zeros((16, W))
    want[:12, :N_PAD] = rows[0][:12, :1]
    want[:12, N_PAD:2 * N_PAD] = rows[1][:12, :1]
    assert s.level == z.level - 1 and np.max(np.abs(got - want)) < 1e-5


def test_paired_softmax_model():
    """NEXUS-BERT-PACKING: the folds without the row duplication (the maximum and the sum read from the row's
    first slot) approximate softmax as closely as the paper's duplicated QuickMax does."""
    rng = np.random.default_rng(3)
    n, n_pad, B = 12, 16, 4.0
    s = rng.uniform(-B, B, (2, n, n))
    key = np.r_[np.ones(n - 2), np.zeros(n_pad - n + 2)]
    exact = np.exp(s - s.max(-1, keepdims=True)) * key[:n]
    exact /= exact.sum(-1, keepdims=True)
    paired = softmax_model(s, key, n_pad, B, paired=True)
    dup = softmax_model(s, key, n_pad, B)
    assert np.max(np.abs(paired - exact)) < 2 * np.max(np.abs(dup - exact)) + 1e-4
    assert np.max(np.abs(paired - dup)) < 5e-3


def _fold_packed(x: list[np.ndarray], f, lay, n_pad: int, pack) -> list[np.ndarray]:
    """The paired Softmax's QuickMax schedule on float64 slot vectors with f as the fold's operation, the running
    results packed by `pack` (numpy's or the evaluator's pack_maxima) after each round but the last; returns, per
    input, the value at its rows' first slots spread as `spread` does (numpy)."""
    s, held = list(x), [[(j, 0)] for j in range(len(x))]
    rounds = n_pad.bit_length() - 1
    for k in range(rounds):
        s = [f(v, np.roll(v, -(1 << k))) for v in s]
        if len(s) > 1 and k < rounds - 1:
            s, held = pack(s, held, 2 << k)
    out = [None] * len(x)
    first = pk.starts(lay, n_pad)
    for c, group in enumerate(held):
        for j, o in group:
            v = np.roll(s[c] * np.roll(first, o), -o)
            for b in range(n_pad.bit_length() - 1):
                v = v + np.roll(v, 1 << b)
            out[j] = v
    return out


class _NumpyEv:
    """The evaluator calls of packing.pack_maxima on float64 slot vectors."""

    def mul_const(self, a, m):
        return a * m

    def rescale(self, a):
        return a

    def add(self, a, b):
        return a + b

    def rotate(self, a, r):
        return np.roll(a, -r)


def _rows_of(rng, count: int, lay, n_pad: int) -> list[np.ndarray]:
    """`count` paired score vectors: two rows of n_pad per active window, values in [-1/2, 1/2]."""
    out = []
    for _ in range(count):
        v = np.zeros((lay.slots // lay.window, lay.window))
        v[: lay.n, : 2 * n_pad] = rng.uniform(-0.5, 0.5, (lay.n, 2 * n_pad))
        out.append(v.ravel())
    return out


@pytest.mark.parametrize("count", [2, 3, 6])
def test_packed_quickmax_keeps_every_rows_maximum(count):
    """NEXUS-BERT-REFRESHES: the running maxima packed two ciphertexts into one after each QuickMax round
    (packing.pack_maxima; quickmax_widths ciphertexts per round) leave each row's exact maximum in its first slot,
    as the unpacked folds do, spread over the row (numpy, the exact max as the fold's operation)."""
    rng = np.random.default_rng(count)
    x = _rows_of(rng, count, Lay, N_PAD)
    want = _fold_packed(x, np.maximum, Lay, N_PAD, lambda s, h, st: pk.pack_maxima(_NumpyEv(), s, h, st, Lay, N_PAD))
    plain = _fold_packed(x, np.maximum, Lay, N_PAD, lambda s, h, st: (s, h))  # no packing
    for got, unpacked, v in zip(want, plain, x):
        rows = v.reshape(-1, W)[: Lay.n, : 2 * N_PAD].reshape(Lay.n, 2, N_PAD)
        expect = np.zeros((16, W))
        expect[: Lay.n, :N_PAD] = rows[:, 0].max(-1, keepdims=True)
        expect[: Lay.n, N_PAD:2 * N_PAD] = rows[:, 1].max(-1, keepdims=True)
        assert np.array_equal(got.reshape(16, W), expect) and np.array_equal(unpacked.reshape(16, W), expect)
    assert pk.quickmax_widths(count, 4) == {2: [2, 1, 1, 1], 3: [3, 2, 1, 1], 6: [6, 3, 2, 1]}[count]


def test_pack_maxima_on_the_ring(kit):
    """NEXUS-BERT-REFRESHES: pack_maxima on ciphertexts (N = 2^11) equals the numpy schedule: 4 score ciphertexts
    through the 4 rounds of a fold (the sum as the operation: no level, the same slot movements as QuickMax's),
    packed to 2 and 1 (1 level each), every row's result spread from its offset (1 level); error < 1e-5."""
    x = _rows_of(np.random.default_rng(7), 4, Lay, N_PAD)
    want = _fold_packed(x, np.add, Lay, N_PAD, lambda s, h, st: pk.pack_maxima(_NumpyEv(), s, h, st, Lay, N_PAD))
    ev = kit.ev
    cts = [kit.encrypt(v) for v in x]
    s, held = cts, [[(j, 0)] for j in range(4)]
    for k in range(4):
        s = [ev.add(c, ev.rotate(c, 1 << k)) for c in s]
        if len(s) > 1 and k < 3:
            s, held = pk.pack_maxima(ev, s, held, 2 << k, Lay, N_PAD)
    assert len(s) == 1 and sorted(o for _, o in held[0]) == [0, 1, 2, 3] and s[0].level == cts[0].level - 2
    first = pk.starts(Lay, N_PAD)
    for j, o in held[0]:
        got = kit.decrypt(pk.spread(ev, s[0], first, N_PAD, offset=o))
        assert np.max(np.abs(got - want[j])) < 1e-5


def test_paired_refresh_takes_real_parts():
    """NEXUS-BERT-PACKING: two ciphertexts refreshed by one bootstrap (Paired.refresh_pair, an oracle bootstrapper)
    come back as their real parts even when one carries an imaginary part (an earlier bootstrap's noise, grown by
    Newton steps): without taking the real parts first, y's imaginary part lands in -u/2's slots scaled by the bounds'
    ratio (here 1/256 x 0.5 = 2e-3 against values of 2e-4, as in LayerNorm 2 at N = 2^16)."""
    p = Parameters.create(N=2048, levels=3, log_q0=50, log_qi=36, log_p=50, insecure=True)
    k = Kit(p, elements=[conjugation_element(p)])
    rng = np.random.default_rng(3)
    y = rng.uniform(20, 130, p.slots) + 0.5j * rng.standard_normal(p.slots)  # bound 134, imaginary noise
    w = -rng.uniform(1e-4, 3e-4, p.slots)  # bound 0.5, values far below it
    fw = Paired()
    fw.ev, fw.bts = k.ev, OracleBootstrapper(k.sk, output_level=p.L, rng=RandomSource.insecure_seeded(9))
    a, b = fw.refresh_pair(k.encrypt(y, level=2), k.encrypt(w, level=2), 134.0, 0.5)
    np.testing.assert_allclose(k.decrypt(a), y.real, atol=1e-3)
    np.testing.assert_allclose(k.decrypt(b), w, atol=1e-6)


def test_spread_many_shares_the_coarse_copies(kit):
    """NEXUS-SPREAD-SHARED: five values per row at offsets 0 .. 4 of one ciphertext (other slots holding other values,
    as after QuickMax) spread over their rows by `spread_many` equal `spread` of each (N = 2^11, error < 1e-5) with
    log2(16 / 8) + 5 log2(8) = 16 rotations instead of 5 log2(16) + 4 = 24, in 2 levels; from a ciphertext
    masked and copied coarsely before (the Softmax's row sums before their inverse), in 1 level after."""
    ev = CountingEvaluator(kit.ev)
    v = np.zeros((16, W))
    v[:12, : 2 * N_PAD] = kit.rng.uniform(-1, 1, (12, 2 * N_PAD))
    ct = kit.encrypt(v.ravel())
    first, offsets = pk.starts(Lay, N_PAD), [0, 1, 2, 3, 4]
    got = pk.spread_many(ev, ct, first, N_PAD, offsets)
    assert ev.counts["rotations"] == 16 and pk.spread_block(offsets) == 8 and pk.spread_levels(offsets) == 2
    ev.reset()
    want = [pk.spread(ev, ct, first, N_PAD, offset=o) for o in offsets]
    assert ev.counts["rotations"] == 24
    keep = sum(np.roll(first, o) for o in offsets)
    pre = pk.spread_coarse(ev, ev.rescale(ev.mul_const(ct, keep)), N_PAD, 8)
    after = pk.spread_many(ev, pre, first, N_PAD, offsets, coarse=False)
    for o, a, b, c in zip(offsets, got, want, after):
        assert a.level == ct.level - 2 == b.level - 1 == c.level
        expect = np.zeros((16, W))
        expect[:12, :N_PAD] = v[:12, o: o + 1]
        expect[:12, N_PAD:2 * N_PAD] = v[:12, N_PAD + o: N_PAD + o + 1]
        for x in (a, b, c):
            assert np.max(np.abs(kit.decrypt(x).reshape(16, W) - expect)) < 1e-5


def test_packed_fold_of_the_row_sums_on_the_ring(kit):
    """NEXUS-SUMS-PACKED: the row sums of 4 score ciphertexts folded with pack_maxima after each round but the last
    (packing.packed_fold, N = 2^11): one ciphertext holding each row's exact sum at its score ciphertext's offset
    behind the row start (masked there: error < 1e-5), 4 + 2 + 1 + 1 + 3 = 11 rotations instead of 4 x 4 + 3 = 19
    for QuickSum on each and pack_first, 2 levels (one per packing)."""
    x = _rows_of(np.random.default_rng(9), 4, Lay, N_PAD)
    ev = CountingEvaluator(kit.ev)
    cts = [kit.encrypt(v) for v in x]
    (s,), (group,) = pk.packed_fold(ev, cts, Lay, N_PAD, pk.quickmax_widths(4, 4))
    assert ev.counts["rotations"] == 11 and s.level == cts[0].level - 2
    assert sorted(j for j, _ in group) == [0, 1, 2, 3] and len({o for _, o in group}) == 4
    first = pk.starts(Lay, N_PAD)
    got = kit.decrypt(ev.rescale(ev.mul_const(s, sum(np.roll(first, o) for _, o in group)))).reshape(16, W)
    want = np.zeros((16, W))
    for j, o in group:
        rows = x[j].reshape(16, W)[: Lay.n]
        want[: Lay.n, o] = rows[:, :N_PAD].sum(-1)
        want[: Lay.n, N_PAD + o] = rows[:, N_PAD:2 * N_PAD].sum(-1)
    assert np.max(np.abs(got - want)) < 1e-5
