"""The cryptographic random source and its samplers (CKKS-RAND-1)."""

import math

import numpy as np
import pytest

from refimpl.csprng import Stream, expand_seed, insecure_key
from refimpl.ring.sampling import RandomSource, gaussian_table, uniform_from_seed, uniform_rows

Q = np.array([97, (1 << 40) - 87, (1 << 61) - 1], dtype=np.uint64)


def test_uniform_residues_cover_the_range_and_are_flat():
    """CKKS-RAND-1: row i is in [0, q_i); a small modulus' residues are flat (chi-square)."""
    u = RandomSource().uniform(Q, 1 << 15)
    assert u.shape == (3, 1 << 15) and u.dtype == np.uint64
    assert all((u[i] < Q[i]).all() for i in range(3))
    counts = np.bincount(u[0].astype(np.int64), minlength=97)
    expected = u.shape[1] / 97
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 160  # 96 degrees of freedom: mean 96, P(> 160) < 1e-4
    assert u[2].max() > (1 << 60)  # the high bits are used


def test_ternary_sparse_and_gaussian_have_their_distributions():
    """CKKS-RAND-1: ternary thirds, sparse exactly h of +-1, rounded Gaussian of width sigma cut at 6 sigma."""
    r = RandomSource()
    t = r.ternary(1 << 16)
    assert set(np.unique(t)) == {-1, 0, 1} and all(abs(np.mean(t == v) - 1 / 3) < 0.01 for v in (-1, 0, 1))
    s = r.sparse_ternary(1 << 12, 192)
    assert np.count_nonzero(s) == 192 and set(np.unique(s)) == {-1, 0, 1}
    assert abs(int((s == 1).sum()) - 96) < 40
    e = r.gaussian(1 << 16, 3.2)
    assert abs(e.std() - 3.2) < 0.05 and abs(e.mean()) < 0.05 and np.abs(e).max() <= 19
    assert not r.gaussian(64, 0.0).any()
    # the table inverts the rounded Gaussian's CDF: P(e = 0) = erf(0.5 / (sigma sqrt 2))
    thr = gaussian_table(3.2)
    assert thr.size == 2 * 19 and np.all(np.diff(thr.astype(object)) >= 0)
    assert abs(np.mean(e == 0) - math.erf(0.5 / (3.2 * math.sqrt(2)))) < 0.01


def test_insecure_seed_is_reproducible_and_named():
    """CKKS-RAND-1: only the insecure name reproduces; fresh sources differ; seeded public halves
    are a pure function of the seed."""
    a = RandomSource.insecure_seeded(9).uniform(Q, 64)
    assert np.array_equal(a, RandomSource(insecure_seed=9).uniform(Q, 64))
    assert not np.array_equal(RandomSource().uniform(Q, 64), RandomSource().uniform(Q, 64))
    assert RandomSource.insecure_seeded(9).insecure and not RandomSource().insecure
    assert np.array_equal(uniform_from_seed(5, Q, 128), uniform_from_seed(5, Q, 128))
    assert not np.array_equal(uniform_from_seed(5, Q, 128), uniform_from_seed(6, Q, 128))
    assert np.array_equal(uniform_from_seed(5, Q, 128), uniform_rows(expand_seed(5, "uniform"), Q, 128))


def test_stream_erases_its_key_and_reads_are_deterministic():
    """CKKS-RAND-1: each read replaces the key (fast key erasure); the same key and read sizes give
    the same bytes; a non-erasing stream is one continuous keystream."""
    k = insecure_key(1, "t")
    s1, s2 = Stream(k), Stream(k)
    assert s1.read(100) == s2.read(100) and s1.state() != k
    plain = Stream(k, erase=False)
    whole = Stream(k, erase=False).read(96)
    assert plain.read(40) + plain.read(56) == whole
    with pytest.raises(ValueError, match="32 bytes"):
        Stream(b"short")
