"""The RLWE samplers' distributions (RING-SAMPLE): what a secret or an error must look like.

Written from the mutation run of refimpl/ring: every property here is one a plausible bug in a
sampler breaks while the CKKS round trips still pass (a shifted error mean, a one-sided clip,
a sparse secret with only +1 entries, a Hamming weight of N refused, float coefficients).
"""

import math

import numpy as np
import pytest

from refimpl.ring.sampling import RandomSource, ZeroNoise

N = 2**14
SIGMA = 3.2


def test_uniform_ternary_secret():
    """RING-SAMPLE: a uniform ternary secret is int64 in {-1, 0, 1}, each value a third of the time (within 3 %)."""
    s = RandomSource(1).ternary(N)
    assert s.dtype == np.int64 and s.shape == (N,)
    counts = np.array([np.sum(s == v) for v in (-1, 0, 1)])
    assert counts.sum() == N and np.all(np.abs(counts / N - 1 / 3) < 0.03)


@pytest.mark.parametrize("h", [1, 64, 192, N])
def test_sparse_ternary_secret(h):
    """RING-SAMPLE: exactly h nonzero int64 coefficients, each -1 or +1 (both signs, about half each), at
    distinct positions spread over the whole ring; h = 1 and h = N are allowed."""
    s = RandomSource(2).sparse_ternary(N, h)
    assert s.dtype == np.int64 and s.shape == (N,)
    nz = np.flatnonzero(s)
    assert nz.size == h and set(np.unique(s[nz])) <= {-1, 1}
    if h >= 64:
        plus = np.sum(s[nz] == 1)
        assert abs(plus - h / 2) <= 4 * math.sqrt(h / 4)  # both signs occur, balanced
    if 1 < h < N:
        assert nz.max() - nz.min() > N // 2  # not bunched at the start


@pytest.mark.parametrize("h", [0, -1, N + 1])
def test_sparse_ternary_refuses_weights_outside_1_to_n(h):
    """RING-SAMPLE: a Hamming weight outside (0, N] raises a ValueError that names the range."""
    with pytest.raises(ValueError, match=r"\(0, N="):
        RandomSource(3).sparse_ternary(N, h)


def test_gaussian_error_is_centred_symmetric_and_cut():
    """RING-SAMPLE: the rounded Gaussian is int64, has mean 0 (within 4 standard errors), equal tails on both
    sides, and is cut at +-floor(6 sigma) = +-19 on both sides (sigma = 12 makes the cut visible)."""
    e = RandomSource(4).gaussian(2**16, SIGMA)
    assert e.dtype == np.int64
    assert abs(e.mean()) < 4 * SIGMA / math.sqrt(e.size)
    lo, hi = np.sum(e <= -6), np.sum(e >= 6)
    assert abs(lo - hi) < 4 * math.sqrt(lo + hi)
    wide = RandomSource(5).gaussian(2**16, 12.0)  # 6 sigma = 72: about 0.000002 of the draws reach it
    cut = RandomSource(6).gaussian(2**16, 40.0)  # 6 sigma = 240, sigma 40: the cut is never reached
    assert np.max(np.abs(wide)) <= 72 and np.max(np.abs(cut)) <= 240
    # the cut on each side: with sigma = 0.166, floor(6 sigma) = 0 although 0.27 % of the draws round
    # to +-1 (|x| >= 3 sigma); a clip on one side only would leave that side's +-1 values
    assert not np.any(RandomSource(7).gaussian(2**16, 0.166))
    both = RandomSource(8).gaussian(2**16, 0.34)  # floor(2.04) = 2: +-1 common on both sides, nothing beyond 2
    assert np.sum(both == -1) > 1000 and np.sum(both == 1) > 1000 and np.max(np.abs(both)) <= 2


def test_zero_noise_is_int64_zero():
    """RING-SAMPLE: the ZeroNoise test source returns int64 zeros of length N."""
    z = ZeroNoise(0).gaussian(N)
    assert z.dtype == np.int64 and z.shape == (N,) and not np.any(z)


def test_uniform_residues_and_key_seeds():
    """RING-SAMPLE: uniform residues are uint64 [len(moduli), N], row i in [0, q_i) and spread over it;
    seeds for the public halves of keys are distinct non-negative integers; a seed expands to the
    same polynomial every time (uniform_from_seed)."""
    from refimpl.ring.sampling import uniform_from_seed

    q = np.array([97, 2**40 + 1, 2**61 - 1], dtype=np.uint64)
    src = RandomSource(11)
    u = src.uniform(q, N)
    assert u.dtype == np.uint64 and u.shape == (3, N)
    for row, m in zip(u, q):
        assert row.max() < m and row.max() > m // 2 and row.min() < m // 2
    assert len(np.unique(u[0])) == 97  # every residue of the small modulus occurs
    seeds = {src.seed() for _ in range(8)}
    assert len(seeds) == 8 and all(isinstance(s, int) and s >= 0 for s in seeds)
    assert max(seeds) > 2**40  # full-width seeds, not a small range
    s = next(iter(seeds))
    a = uniform_from_seed(s, q, 64)
    assert a.shape == (3, 64) and a.dtype == np.uint64 and np.array_equal(a, uniform_from_seed(s, q, 64))
