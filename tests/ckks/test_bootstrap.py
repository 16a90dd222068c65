"""CKKS-BOOT-*: each bootstrapping stage against its plaintext circuit, then the whole bootstrap
through its public entry point (N = 2^10, sparse secret h = 64, insecure toy ring)."""

import numpy as np
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import BootstrapConfig, Bootstrapper, bootstrap_parameters, bootstrap_preset
from refimpl.ckks.bootstrap.dft import apply_plain, bit_reverse, decode_stages, encode_stages, group
from refimpl.ckks.bootstrap.eval_mod import eval_mod, k_from_hamming_weight
from refimpl.ckks.bootstrap.mod_raise import mod_raise, scale_down
from refimpl.ckks.encoder import embed
from refimpl.ring.sampling import RandomSource


class Boot:
    def __init__(self):
        self.p, self.rc = bootstrap_parameters(1024, levels_after=2, h=64, config=BootstrapConfig(level_budget=(2, 2)),
                                               num_p=3, insecure=True)
        kg = KeyGenerator(self.p, RandomSource.insecure_seeded(11))
        self.sk = kg.secret_key()
        self.pk = kg.public_key(self.sk)
        probe = Bootstrapper(Evaluator(self.p), self.rc)
        self.ek = kg.evaluation_keys(self.sk, elements=probe.galois_elements())
        self.ev = Evaluator(self.p, self.ek)
        self.bs = Bootstrapper(self.ev, self.rc)
        self.enc = Encoder(self.p)
        self.E = Encryptor(self.pk, RandomSource.insecure_seeded(12))
        self.D = Decryptor(self.sk)
        self.rng = np.random.default_rng(5)

    def slots(self):
        n = self.p.slots
        return self.rng.uniform(-1, 1, n) + 1j * self.rng.uniform(-1, 1, n)

    def dec(self, ct):
        return self.enc.decode(self.D.decrypt(ct))


@pytest.fixture(scope="module")
def B():
    return Boot()


def bits(err):
    return -np.log2(np.abs(err))


def test_special_fft_stages_match_the_encoder():
    """CKKS-BOOT-DFT: S2C stages on bit-reversed w equal the canonical embedding; C2S inverts it."""
    N = 128
    n = N // 2
    m = np.random.default_rng(1).normal(size=N)
    w = m[:n] + 1j * m[n:]
    for budget in (1, 2, 3, 6):
        x = bit_reverse(w)
        for d in group(decode_stages(n), budget, n):
            x = apply_plain(d, x)
        np.testing.assert_allclose(x, embed(m), atol=1e-12)
        y = embed(m)
        for d in group(encode_stages(n), budget, n):
            y = apply_plain(d, y)
        np.testing.assert_allclose(y, bit_reverse(w), atol=1e-12)


def test_coeffs_to_slots_and_back_encrypted(B):
    """CKKS-BOOT-C2S/S2C: the homomorphic maps against the plaintext FFT of bit-reversed input."""
    z = B.slots()
    ct = B.E.encrypt(B.enc.encode(z))
    u = B.bs.coeffs_to_slots(ct, out_scale=ct.scale)
    assert u.level == B.p.L - B.rc.level_budget[0]
    want = z.copy()
    for d in B.bs.c2s:
        want = apply_plain(d, want)
    assert np.max(np.abs(B.dec(u) - want)) < 2**-20
    back = B.bs.slots_to_coeffs(u)
    assert np.max(np.abs(B.dec(back) - z)) < 2**-18
    assert back.scale == B.p.scale


def test_eval_mod_on_integer_plus_small_message(B):
    """CKKS-BOOT-EVALMOD: slots (I + Delta m / q0) / K with integers |I| < K -> m."""
    p, cfg = B.p, B.rc.eval_mod
    K, q0, delta = cfg.K, p.q[0], p.scale
    n = p.slots
    I = np.rint(B.rng.uniform(-K + 1, K - 1, n))
    m = B.rng.uniform(-1, 1, n)
    y = (I + delta * m / q0) / K
    lvl = p.L - B.rc.level_budget[0]
    ct = B.E.encrypt(B.enc.encode(y, level=lvl, scale=float(p.q[lvl])))
    out = eval_mod(B.ev, ct, cfg, q0, delta)
    assert out.level == lvl - cfg.depth
    assert np.max(np.abs(B.dec(out).real - m)) < 2**-12


def test_mod_raise_adds_multiples_of_q0(B):
    """CKKS-BOOT-MODRAISE: the raised ciphertext decrypts to t + q0 I with small integer I."""
    p = B.p
    ct = scale_down(B.ev, B.E.encrypt(B.enc.encode(B.slots())))
    raised = mod_raise(ct, p)
    basis = p.q_basis(p.L)
    big = np.array(p.ctx.reconstruct(p.ctx.intt(B.D.decrypt(raised).poly, basis), basis), dtype=object)
    small = np.array(p.ctx.reconstruct(p.ctx.intt(B.D.decrypt(ct).poly, (0,)), (0,)), dtype=object)
    I = (big - small) // p.q[0]
    assert all((big - small) % p.q[0] == 0)
    K, _ = k_from_hamming_weight(p.h, p.N, -25)
    assert max(abs(int(x)) for x in I) < K


def test_bootstrap_end_to_end(B):
    """CKKS-BOOT-1: output level and scale as promised; >= 12 bits on a toy ring; input not mutated."""
    z = B.slots()
    ct = B.ev.drop_level(B.E.encrypt(B.enc.encode(z)), 0)
    snap = [c.copy() for c in ct.c]
    out = B.bs.bootstrap(ct)
    assert out.level == B.bs.output_level == B.p.L - B.rc.depth
    assert out.scale == B.p.scale
    assert all(np.array_equal(a, b) for a, b in zip(ct.c, snap))
    b = bits(B.dec(out) - z)
    assert b.min() >= 20 and np.mean(b) >= 22  # measured 26.4 / 28.5; the issue asks >= 12 on toy rings
    # the refreshed ciphertext computes: one more product
    sq = B.ev.mul_rescale(out, out)
    assert np.max(np.abs(B.dec(sq) - z * z)) < 2**-10


def test_bootstrap_keeps_precision_on_structured_inputs(B):
    """CKKS-BOOT-Q0: a constant vector puts its whole value into one coefficient (the sine's
    worst case, relative error (2 pi Delta m / q_0)^2 / 6): q_0 = 2^52 keeps it as precise as
    uniform slots (q_0 = 2^48 gains 2.5 bits on uniform slots at N = 2^14 but falls to 13.7
    bits on this input)."""
    assert B.p.q[0].bit_length() == 52
    for z in (np.full(B.p.slots, 0.9 + 0.9j), 0.9 + 0.1 * B.slots()):
        out = B.bs.bootstrap(B.ev.drop_level(B.E.encrypt(B.enc.encode(z)), 0))
        assert bits(B.dec(out) - z).min() >= 20


def test_bootstrap_of_a_ciphertext_with_levels_left(B):
    """ScaleDown handles a ciphertext that still has levels (and a non-default scale)."""
    z = B.slots() * 0.5
    ct = B.E.encrypt(B.enc.encode(z, level=3))
    out = B.bs.bootstrap(ct)
    assert out.level == B.bs.output_level
    assert np.max(np.abs(B.dec(out) - z)) < 2**-11


def test_bootstrapper_declares_its_keys(B):
    elements = B.bs.galois_elements()
    assert 2 * B.p.N - 1 in elements  # conjugation
    assert set(elements) <= set(B.ek.galois)
    assert "K = " in B.bs.describe()


def test_sparse_slot_bootstrap(B):
    """CKKS-BOOT-SPARSE: n = 64 < N/2 slots (period-n slot vector): SubSum, n-point DFT, same
    precision class; the output repeats with period n."""
    n = 64
    probe = Bootstrapper(Evaluator(B.p), B.rc, slots=n)
    kg = KeyGenerator(B.p, RandomSource.insecure_seeded(11))  # same seed: same secret as B.sk
    sk = kg.secret_key()
    assert np.array_equal(sk.coeffs, B.sk.coeffs)
    extra = [e for e in probe.galois_elements() if e not in B.ek.galois]
    keys = dict(B.ek.galois)
    keys.update(kg.evaluation_keys(sk, elements=extra, relin=False).galois)
    from refimpl.ckks import EvaluationKeys

    bs = Bootstrapper(Evaluator(B.p, EvaluationKeys(relin=B.ek.relin, galois=keys)), B.rc, slots=n)
    z = B.rng.uniform(-1, 1, n) + 1j * B.rng.uniform(-1, 1, n)
    full = np.tile(z, B.p.slots // n)
    ct = bs.ev.drop_level(B.E.encrypt(B.enc.encode(full)), 0)
    out = B.dec(bs.bootstrap(ct))
    assert out.shape == full.shape
    b = bits(out - full)
    assert b.min() >= 18 and np.mean(b) >= 20
    with pytest.raises(Exception, match="power of two"):
        Bootstrapper(Evaluator(B.p), B.rc, slots=48)


def test_sparse_secret_encapsulation():
    """CKKS-BOOT-ENCAP: dense main secret, h = 32 ephemeral secret around ModRaise (K from 32,
    not from the dense weight); the key down to s' is a level-0 key: rows q_0 and P, one digit."""
    p, rc = bootstrap_preset("toy-2^10-dense")
    assert p.secret == "ternary" and rc.encapsulation_h == 32 and rc.eval_mod.K <= 13
    kg = KeyGenerator(p, RandomSource.insecure_seeded(21))
    sk = kg.secret_key()
    sk_eph = kg.secret_key(hamming_weight=rc.encapsulation_h)
    assert np.count_nonzero(sk_eph.coeffs) == 32 and np.count_nonzero(sk.coeffs) > p.N // 2
    down, up = kg.encapsulation_keys(sk, sk_eph)
    assert down.level == 0 and down.rows == (0,) + p.p_basis and len(down.b) == 1
    assert all(b.shape == (1 + len(p.p), p.N) and b.all(axis=1).any() for b in down.b)
    assert up.level == p.L and len(up.b) == p.dnum
    probe = Bootstrapper(Evaluator(p), rc)
    ek = kg.evaluation_keys(sk, elements=probe.galois_elements())
    bs = Bootstrapper(Evaluator(p, ek), rc, encapsulation=(down, up))
    enc = Encoder(p)
    z = np.random.default_rng(3).uniform(-1, 1, p.slots)
    ct = bs.ev.drop_level(Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(22)).encrypt(enc.encode(z)), 0)
    out = bs.bootstrap(ct)
    b = bits(enc.decode(Decryptor(sk).decrypt(out)).real - z)
    assert out.level == p.L - rc.depth and b.min() >= 18 and b.mean() >= 20
    with pytest.raises(Exception, match="encapsulation keys"):
        Bootstrapper(Evaluator(p, ek), rc).bootstrap(ct)


def test_slots_to_coeffs_spreads_the_scale_drop():
    """CKKS-BOOT-S2C-SCALE: from EvalMod's scale (2^10 above Delta) down to Delta exactly, the
    drop spread over the groups; against the whole drop in the last matrix (its diagonals
    encoded 2^10 below the prime) on the same ciphertext, with 30-bit SlotsToCoeffs primes."""
    from refimpl.ckks.bootstrap.dft import apply_linear

    p, rc = bootstrap_parameters(1024, levels_after=1, h=64, config=BootstrapConfig(level_budget=(2, 2)),
                                 log_s2c=30, num_p=3, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(3))
    sk = kg.secret_key()
    bs = Bootstrapper(Evaluator(p), rc)
    bs = Bootstrapper(Evaluator(p, kg.evaluation_keys(sk, elements=bs.galois_elements())), rc)
    enc, rng = Encoder(p), np.random.default_rng(4)
    z = rng.uniform(-1, 1, p.slots) + 1j * rng.uniform(-1, 1, p.slots)
    w = z.copy()
    for d in bs.c2s:
        w = apply_plain(d, w)
    top = p.L - rc.level_budget[0] - rc.eval_mod.depth  # where EvalMod leaves the ciphertext
    ct = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(5)).encrypt(enc.encode(w, level=top, scale=p.scale * 2.0**10))
    out = bs.slots_to_coeffs(ct)
    assert out.scale == p.scale and out.level == top - rc.level_budget[1]
    lumped = ct
    for i, d in enumerate(bs.s2c):
        lumped = apply_linear(bs.ev, lumped, d, out_scale=p.scale if i == len(bs.s2c) - 1 else None)
    assert lumped.scale == p.scale
    spread_bits = np.mean(bits(enc.decode(Decryptor(sk).decrypt(out)) - z))
    lumped_bits = np.mean(bits(enc.decode(Decryptor(sk).decrypt(lumped)) - z))
    assert spread_bits >= lumped_bits + 3  # 10 bits of drop over 2 groups: ~5 bits better
