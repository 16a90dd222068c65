"""CKKS-ENC-1: the FFT encoder equals the Vandermonde definition of the canonical embedding."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl.ckks import CKKSError, Encoder, Parameters
from refimpl.ckks.encoder import embed, unembed, vandermonde_decode, vandermonde_encode


@given(logn=st.integers(2, 8), seed=st.integers(0, 2**32))
def test_fft_embedding_matches_vandermonde(logn, seed):
    N = 2**logn
    rng = np.random.default_rng(seed)
    m = rng.normal(size=N)
    np.testing.assert_allclose(embed(m), vandermonde_decode(m), atol=1e-9 * N)
    z = rng.normal(size=N // 2) + 1j * rng.normal(size=N // 2)
    np.testing.assert_allclose(unembed(z, N), vandermonde_encode(z, N), atol=1e-9 * N)


def test_embedding_is_a_ring_homomorphism():
    """Slotwise product of embeddings = embedding of the negacyclic product."""
    N = 64
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=N), rng.normal(size=N)
    full = np.convolve(a, b)
    prod = full[:N].copy()
    prod[: N - 1] -= full[N:]
    np.testing.assert_allclose(embed(a) * embed(b), embed(prod), atol=1e-9)


def test_encode_decode_roundtrip_precision(kit):
    z = kit.random_slots()
    pt = kit.enc.encode(z)
    # rounding to integers at scale 2^40 costs at most ~ sqrt(N)/2^40 per slot
    assert np.max(np.abs(kit.enc.decode(pt) - z)) < 2**-30
    v = kit.rng.uniform(-1, 1, kit.p.N)
    np.testing.assert_allclose(kit.enc.decode_coeffs(kit.enc.encode_coeffs(v)), v, atol=2**-39)


def test_encode_large_scale_exact():
    """Scales beyond 2^62 take the exact mantissa/exponent path."""
    p = Parameters.create(N=16, levels=3, log_q0=60, log_qi=40, insecure=True)
    enc = Encoder(p)
    v = np.array([1.0, -0.5, 0.25, 3.0])
    pt = enc.encode_coeffs(v, scale=2.0**90)
    basis = p.q_basis(p.L)
    ints = p.ctx.reconstruct(p.ctx.intt(pt.poly, basis), basis)
    assert ints[:4] == [2**90, -(2**89), 2**88, 3 * 2**90]


def test_encode_rejects_bad_input(kit):
    with pytest.raises(CKKSError, match="at most N/2"):
        kit.enc.encode(np.zeros(kit.p.slots + 1))
    with pytest.raises(CKKSError, match="NaN"):
        kit.enc.encode([np.nan])
    with pytest.raises(CKKSError, match="level"):
        kit.enc.encode([1.0], level=kit.p.L + 1)
