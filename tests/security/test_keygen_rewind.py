"""Generator rewind on CKKS key generation, kept as a test (SEC-ATTACK-REWIND).

The attacker obtains the random generator's state after key generation (a memory read, or a
state recovered from outputs, which PCG64 allows) together with the public key, rewinds the
generator and draws the secret again; a candidate s is confirmed by b + a s being small.
"""

import numpy as np

from refimpl.ckks import KeyGenerator, Parameters
from refimpl.csprng import Stream
from refimpl.ring.sampling import RandomSource, SIGMA, GAUSSIAN_TAIL

P = Parameters.create(N=1024, levels=2, log_q0=50, log_qi=30, log_p=50, num_p=1, insecure=True)


class PCG64Source(RandomSource):
    """The former generator (numpy PCG64), deliberately weak: the configuration the attack must beat."""

    def __init__(self, seed):
        super().__init__(insecure_seed=seed)
        self.rng = np.random.default_rng(seed)

    def ternary(self, N):
        return self.rng.integers(-1, 2, N, dtype=np.int64)

    def gaussian(self, N, sigma=SIGMA):
        e = np.rint(self.rng.normal(0.0, sigma, N))
        return np.clip(e, -np.floor(GAUSSIAN_TAIL * sigma), np.floor(GAUSSIAN_TAIL * sigma)).astype(np.int64)


def confirms(pk, s) -> bool:
    """b + a s = e (small) over q_0: the candidate is the secret."""
    ctx, basis = P.ctx, (0,)
    s_ntt = ctx.ntt(ctx.from_int(s, basis), basis)
    e = ctx.intt(ctx.add(pk.b[:1], ctx.mul(pk.a[:1], s_ntt, basis), basis), basis)[0].astype(np.int64)
    q0 = int(P.q[0])
    e = np.where(e > q0 // 2, e - q0, e)
    return bool(np.max(np.abs(e)) <= GAUSSIAN_TAIL * SIGMA)


def rewind_pcg64(state: dict, pk, max_steps: int = 4096):
    """Step the captured PCG64 back 1, 2, ... draws and redraw s; the candidate the key confirms."""
    for k in range(1, max_steps):
        g = np.random.Generator(np.random.PCG64())
        g.bit_generator.state = state
        g.bit_generator.advance(-k)
        s = g.integers(-1, 2, P.N, dtype=np.int64)
        if confirms(pk, s):
            return s
    return None


def rewind_stream(key: bytes, pk, max_reads: int = 64):
    """The same attack on refimpl's stream: restart from the captured key and redraw s from each
    of its next reads (the stream cannot run backwards: each read replaced the key)."""
    st = Stream(key)
    src = RandomSource.insecure_seeded(0)
    src.stream = st
    for _ in range(max_reads):
        s = src.ternary(P.N)
        if confirms(pk, s):
            return s
    return None


def test_rewinding_the_generator_recovers_s_only_from_the_weak_one():
    """SEC-ATTACK-REWIND: from the PCG64 state after key generation and the public key, stepping
    the generator back recovers the secret key exactly (the weak configuration); from the state
    of refimpl's source (fast key erasure) the same search finds nothing."""
    weak = PCG64Source(7)
    kg = KeyGenerator(P, weak)
    sk = kg.secret_key()
    pk = kg.public_key(sk)
    assert confirms(pk, sk.coeffs)  # the oracle accepts the true secret
    stolen = rewind_pcg64(weak.rng.bit_generator.state, pk)
    assert stolen is not None and np.array_equal(stolen, sk.coeffs)

    for src in (RandomSource(), RandomSource.insecure_seeded(7)):
        kg = KeyGenerator(P, src)
        sk = kg.secret_key()
        pk = kg.public_key(sk)
        assert confirms(pk, sk.coeffs)
        assert rewind_stream(src.stream.state(), pk) is None
        assert not np.array_equal(src.ternary(P.N), sk.coeffs)


def test_public_halves_never_come_from_the_secret_stream():
    """SEC-ATTACK-REWIND: the public key's a is expanded from a public seed: two sources with the
    same secret stream but other public streams give the same s and e but another a."""
    a, b = RandomSource.insecure_seeded(3), RandomSource.insecure_seeded(3)
    b.public = Stream(bytes(32))
    ka, kb = KeyGenerator(P, a), KeyGenerator(P, b)
    sa, sb = ka.secret_key(), kb.secret_key()
    assert np.array_equal(sa.coeffs, sb.coeffs)
    pa, pb = ka.public_key(sa), kb.public_key(sb)
    assert pa.a_seed != pb.a_seed and not np.array_equal(pa.a, pb.a)
    assert confirms(pa, sa.coeffs) and confirms(pb, sb.coeffs)
