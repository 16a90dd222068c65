"""The official code's simplified variants (like-for-like benchmark rows) against their float64 models."""

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.nexus.official import (
    gelu3, gelu3_plain, layernorm_official, layernorm_official_plain, softmax_official, softmax_official_plain,
)

from .helpers import Kit, bits


@pytest.fixture(scope="module")
def kit():
    return Kit(Parameters.create(N=2048, levels=18, dnum=4, insecure=True), rotations=[1 << i for i in range(6)] + [-32, -64])


def test_gelu3(kit):
    """NEXUS-OFF-GELU: 18 levels; vs tanh-GELU MAE 1.3e-4 on [-5, 5] (the official metric)."""
    x = np.linspace(-5, 5, kit.p.slots)
    ct = kit.encrypt(x)
    out = gelu3(kit.ev, ct)
    assert ct.level - out.level == 18
    z = kit.decrypt(out)
    assert bits(z - gelu3_plain(x)) >= 18
    tanh_gelu = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    assert np.mean(np.abs(z - tanh_gelu)) < 2e-4


def test_softmax_official(kit):
    """NEXUS-OFF-SOFTMAX: rows of 32 in [-10, 0], windows of 64; 17 levels."""
    n = 32
    row = np.linspace(-10, 0, n)
    x = np.tile(np.concatenate([row, np.zeros(n)]), kit.p.slots // (2 * n))
    out = softmax_official(kit.ev, kit.encrypt(x), n)
    assert kit.p.L - out.level == 17
    z = kit.decrypt(out).reshape(-1, 2 * n)[:, :n]
    assert bits(z - softmax_official_plain(x, n).reshape(-1, 2 * n)[:, :n]) >= 20
    # the official x0.01 pre-scaling is valid for row sums in about [19, 181]; this row sums to 3.6: off by 8e-2
    assert np.max(np.abs(z - np.exp(row) / np.exp(row).sum())) > 0.05


def test_layernorm_official(kit):
    """NEXUS-OFF-LN: rows of 48 (n = 64, windows of 128), x / sqrt(mean x^2); 16 levels."""
    F, n = 48, 64
    row = np.linspace(-10, 10, F)
    x = np.tile(np.concatenate([row, np.zeros(2 * n - F)]), kit.p.slots // (2 * n))
    out = layernorm_official(kit.ev, kit.encrypt(x), F, n)
    assert kit.p.L - out.level == 16
    z = kit.decrypt(out).reshape(-1, 2 * n)[:, :F]
    assert bits(z - layernorm_official_plain(x, F, n).reshape(-1, 2 * n)[:, :F]) >= 20
    assert np.max(np.abs(z - row / np.sqrt(np.mean(row**2)))) < 1e-2
