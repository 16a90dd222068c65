"""Security decisions tested at their boundary (CKKS-SEC-BOUNDARY).

A check tested only far from its bound cannot tell log2(P Q) from log2(Q), or the sparse
bound from the uniform one. Here:
  - a property test over random N, levels, special primes, secret distributions and
    Hamming weights: parameters are accepted exactly when log2(P Q), computed here from the
    exact product of the primes, is within the bound for that secret distribution (the HE
    standard's for a uniform ternary secret, Lattigo's 1546 bits for N = 2^16 and h = 192,
    none for any other sparse secret); the draws are centred on the bound, so most examples
    have Q under it and P Q near it;
  - explicit cases at the sparse bound: Q under and P Q over is refused, the same set with a
    uniform secret is accepted;
  - the encapsulation key (sparse-secret encapsulation around ModRaise): the key whose RLWE
    secret is the sparse s' lives over q_0 P only, never over the full Q_L P;
  - the error width: key generation and the sampler draw errors of the parameters' sigma
    (3.2, cut at 6 sigma), measured from the public key's b + a s.
"""

import math
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from refimpl.ckks import InsecureParametersError, KeyGenerator, Parameters
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_preset
from refimpl.ckks.keys import key_rows
from refimpl.ring.primes import ntt_primes
from refimpl.ring.sampling import RandomSource

# the papers' bounds, written out: HE standard Table 1 (128-bit, uniform ternary), OpenFHE for
# 2^16; Lattigo N16QP1546H192H32 for the sparse secret h = 192 at N = 2^16
TERNARY_BOUND = {2**13: 218, 2**14: 438, 2**15: 881, 2**16: 1761}
SPARSE_BOUND = {(2**16, 192): 1546}
SIGMA = 3.2


@lru_cache(maxsize=None)
def pool(bits: int, N: int, count: int) -> tuple[int, ...]:
    return tuple(ntt_primes(bits, N, count))


def build(N: int, target: float, p_bits: int, num_p: int, secret: str, h, insecure=False) -> Parameters:
    """Parameters with log2(P Q) close to `target`: q_0 of 55 bits, 40-bit primes, one tail prime
    of 30..55 bits, num_p special primes of p_bits; every prime its own digit (each below P)."""
    p = pool(p_bits, N, 8)[:num_p]
    rest = target - 55 - num_p * p_bits
    L = max(0, math.floor((rest - 30) / 40))
    tail = min(55, max(30, round(rest - 40 * L)))
    taken = set(p)
    q0 = next(x for x in pool(55, N, 8) if x not in taken)
    taken.add(q0)
    qi = [x for x in pool(40, N, 60) if x not in taken][:L]
    taken.update(qi)
    last = next(x for x in pool(tail, N, 8) if x not in taken)
    q = (q0, *qi, last)
    return Parameters(N=N, q=q, p=tuple(p), scale=2.0**40, digits=tuple((i,) for i in range(len(q))),
                      secret=secret, h=h, insecure=insecure)


def exact_log_qp(params: Parameters) -> float:
    return math.log2(math.prod(params.q) * math.prod(params.p))


def accepted(**kw) -> Parameters | None:
    try:
        return build(**kw)
    except InsecureParametersError:
        return None


CONFIGS = [(N, "ternary", None) for N in TERNARY_BOUND] + [
    (2**16, "sparse", 192), (2**16, "sparse", 32), (2**16, "sparse", 64), (2**15, "sparse", 192), (2**14, "sparse", 192)]


@given(cfg=st.sampled_from(CONFIGS), delta=st.integers(-70, 70), p_bits=st.integers(56, 61), num_p=st.integers(1, 4))
@example(cfg=(2**16, "sparse", 192), delta=10, p_bits=60, num_p=1)  # Q = 1496 bits under 1546, P Q over it
@example(cfg=(2**16, "ternary", None), delta=5, p_bits=61, num_p=3)
def test_accepted_exactly_within_the_bound_for_the_secret(cfg, delta, p_bits, num_p):
    """CKKS-SEC-BOUNDARY: accepted iff log2(P Q) <= the bound of (N, secret, h); refused otherwise,
    whatever log2(Q) alone is; with insecure=True always built, security_bits says which."""
    N, secret, h = cfg
    bound = SPARSE_BOUND.get((N, h)) if secret == "sparse" else TERNARY_BOUND[N]
    centre = bound if bound is not None else TERNARY_BOUND[N]
    kw = dict(N=N, target=centre + delta, p_bits=p_bits, num_p=num_p, secret=secret, h=h)
    loose = build(**kw, insecure=True)
    lqp = exact_log_qp(loose)
    assert abs(loose.log_qp - lqp) < 1e-9
    ok = bound is not None and lqp <= bound
    assert (accepted(**kw) is not None) == ok
    assert loose.security_bits == (128 if ok else 0)


def test_sparse_bound_applies_to_p_q_not_q():
    """CKKS-SEC-BOUNDARY: N = 2^16, h = 192: Q alone under 1546 bits but P Q over it is refused; the
    same primes with a uniform secret (bound 1761) are accepted; with one special prime less P Q fits."""
    kw = dict(N=2**16, target=1546 + 40, p_bits=60, num_p=2, secret="sparse", h=192)
    loose = build(**kw, insecure=True)
    assert loose.log_q < 1546 < loose.log_qp < 1761
    assert accepted(**kw) is None
    assert accepted(**{**kw, "secret": "ternary", "h": None}) is not None
    fits = build(**{**kw, "target": 1546 - 20}, insecure=True)
    assert fits.log_qp <= 1546 and accepted(**{**kw, "target": 1546 - 20}) is not None


@pytest.mark.parametrize("N,h", [(2**16, 191), (2**16, 32), (2**15, 192)])
def test_sparse_secret_without_an_estimate_is_refused(N, h):
    """CKKS-SEC-BOUNDARY: a sparse secret with no published estimate is refused even with a small modulus."""
    with pytest.raises(InsecureParametersError):
        build(N=N, target=200, p_bits=60, num_p=1, secret="sparse", h=h)
    assert build(N=N, target=200, p_bits=60, num_p=1, secret="sparse", h=h, insecure=True).security_bits == 0


@pytest.fixture(scope="module")
def encapsulated():
    params, _ = bootstrap_preset("toy-2^10-dense")
    kg = KeyGenerator(params, RandomSource.insecure_seeded(3))
    sk = kg.secret_key()
    sk_sparse = kg.secret_key(hamming_weight=32)
    return params, sk, sk_sparse, kg.encapsulation_keys(sk, sk_sparse)


def _centred(x: np.ndarray, q: int) -> np.ndarray:
    v = x.astype(object) % q
    return np.array([int(t) - q if t > q // 2 else int(t) for t in v], dtype=np.int64)


def test_encapsulation_key_to_the_sparse_secret_lives_over_q0_p_only(encapsulated):
    """CKKS-SEC-BOUNDARY: the key whose RLWE secret is the sparse s' (h = 32) is a level-0 key over
    q_0 P (log2 q_0 P bits, not log2 Q_L P); the key back to the dense s serves every level."""
    params, sk, sk_sparse, (down, up) = encapsulated
    assert np.count_nonzero(sk_sparse.coeffs) == 32
    assert down.level == 0 and down.rows == (0,) + params.p_basis == key_rows(params, 0)
    assert all(b.shape[0] == 1 + len(params.p) for b in down.b)
    assert up.level == params.L and len(up.rows) == len(params.q) + len(params.p)
    # the down key is an RLWE sample under s' over q_0 P: b + a s' = P s + e on q_0, b + a s' = e on P
    ctx = params.ctx
    P = math.prod(params.p)
    for row, idx in enumerate(down.rows):
        q = int(ctx.q[idx])
        b = ctx.intt(down.b[0][row:row + 1], (idx,))[0]
        a = down.a(0)[row:row + 1]
        a_s = ctx.intt(ctx.mul(a, sk_sparse.s_ntt[idx:idx + 1], (idx,)), (idx,))[0]
        e = (b.astype(object) + a_s.astype(object)) % q
        if idx == 0:
            e = (e - (P % q) * np.asarray(sk.coeffs, dtype=object)) % q
        assert np.max(np.abs(_centred(e, q))) <= math.floor(6 * SIGMA)


def test_error_width_of_the_keys_and_the_sampler():
    """CKKS-SEC-BOUNDARY: the public key's error e = b + a s has the standard deviation of a rounded
    Gaussian of sigma = 3.2 (sqrt(sigma^2 + 1/12) = 3.213, within 5 %) and is cut at 6 sigma; the
    sampler alone: 2^16 draws within 1.5 %, a 3-sigma tail present."""
    params = Parameters.create(N=4096, levels=2, insecure=True)
    assert params.sigma == SIGMA
    kg = KeyGenerator(params, RandomSource.insecure_seeded(9))
    sk = kg.secret_key()
    pk = kg.public_key(sk)
    ctx = params.ctx
    q = int(ctx.q[0])
    b = ctx.intt(pk.b[0:1], (0,))[0]
    a_s = ctx.intt(ctx.mul(pk.a[0:1], sk.s_ntt[0:1], (0,)), (0,))[0]
    e = _centred((b.astype(object) + a_s.astype(object)) % q, q)
    want = math.sqrt(SIGMA**2 + 1 / 12)
    assert abs(np.std(e) / want - 1) < 0.05 and np.max(np.abs(e)) <= math.floor(6 * SIGMA)
    draws = RandomSource.insecure_seeded(10).gaussian(2**16, SIGMA)
    assert abs(np.std(draws) / want - 1) < 0.015
    assert np.max(np.abs(draws)) <= math.floor(6 * SIGMA) and np.sum(np.abs(draws) >= 3 * SIGMA) > 100
