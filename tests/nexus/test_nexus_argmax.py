"""Argmax (NEXUS §3.4): QuickMax then 1 + Sgn(x - max), with bootstraps, vs numpy argmax."""

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.ckks.bootstrap import OracleBootstrapper
from refimpl.nexus.argmax import argmax, argmax_plain
from refimpl.nexus.counting import CountingBootstrapper, CountingEvaluator

from .helpers import Kit, bits


@pytest.fixture(scope="module")
def kit():
    return Kit(Parameters.create(N=2048, levels=17, dnum=4, insecure=True), rotations=[1, 2, 4, -8])


def test_argmax_official_case(kit):
    """NEXUS-ARGMAX: the official test, 8 values linspace(-0.5, 0.5) with x[3] = 0.5: 3 rounds, bootstraps between rounds and before Sgn."""
    x = np.linspace(-0.5, 0.499999, 8)
    x[3] = 0.5
    rows = np.tile(np.concatenate([x, np.zeros(8)]), kit.p.slots // 16)
    ev = CountingEvaluator(kit.ev)
    bts = CountingBootstrapper(OracleBootstrapper(kit.sk))
    out = argmax(ev, kit.encrypt(rows), 8, window=16, bootstrapper=bts)
    assert ev.counts["rotations"] == 3 + 1 and bts.calls == 3  # levels 17: a refresh before rounds 2, 3 and the Sgn
    z = kit.decrypt(out).reshape(-1, 16)[:, :8]
    assert bits(z - argmax_plain(rows, 8, window=16).reshape(-1, 16)[:, :8]) >= 12
    # x[3] = 0.5 and x[7] = 0.499999 are closer than the Sgn resolution: they share the mass
    assert np.all(z[:, [0, 1, 2, 4, 5, 6]] < 1e-3) and np.all(z[:, [3, 7]].sum(1) > 1.9)


def test_argmax_random_rows_with_padding(kit):
    """Rows of 8 with gaps >= 0.05 and padded entries: exactly one ~1 per row, at numpy's argmax."""
    rows_n = kit.p.slots // 16
    base = np.stack([kit.rng.permutation(np.linspace(-0.45, 0.45, 8)) for _ in range(rows_n)])  # gaps 0.129
    real = np.array([8, 6] * (rows_n // 2))
    km = (np.arange(8)[None, :] < real[:, None]).astype(float)
    x = np.zeros((rows_n, 16)); x[:, :8] = base * km
    mask = np.zeros((rows_n, 16)); mask[:, :8] = km
    out = argmax(kit.ev, kit.encrypt(x.ravel()), 8, key_mask=mask.ravel(), window=16,
                 bootstrapper=OracleBootstrapper(kit.sk))
    z = kit.decrypt(out).reshape(rows_n, 16)[:, :8]
    winner = np.argmax(np.where(km > 0, base, -np.inf), axis=1)
    onehot = np.eye(8)[winner]
    assert np.max(np.abs(z - onehot)) < 0.05
