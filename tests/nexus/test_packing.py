"""The packings of refimpl.nexus.bert.packing (ours) on a real small ring (N = 2^11) against numpy: two heads' rows
per ciphertext and the spread of a row's first slot, two FFN chunks per ciphertext; the paired Softmax's float64
model against exact softmax and the paper's duplicated QuickMax."""

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.nexus.bert import packing as pk
from refimpl.nexus.bert.reference import softmax_model
from tests.nexus.helpers import Kit

N_PAD, W = 16, 64  # rows of 16 keys, token windows of 64 slots: 16 windows in 1024 slots


@pytest.fixture(scope="module")
def kit():
    p = Parameters.create(N=2048, levels=3, log_q0=50, log_qi=36, log_p=50, insecure=True)
    return Kit(p, rotations=[-N_PAD, N_PAD, *(-(1 << k) for k in range(4))])


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
