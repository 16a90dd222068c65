"""CKKS operations against numpy complex references, with precision bounds derived from the parameters.

Noise model behind the bounds (spec CKKS-PREC-1): a fresh public-key encryption has error
v e + e_0 + e_1 s with std about sigma sqrt(4N/3) per coefficient; a slot sums N coefficients,
so the slot error std is about sigma N sqrt(4/3) ~ 2^(log2 N + 1.9) for sigma = 3.2, and the max
over N/2 slots is about 4 std (+2 bits); one bit of margin for the tail. One product with
|m| <= sqrt(2) and a rescale add about 1.5 bits. Hence: fresh >= log2(Delta) - (log2 N + 5),
after mul+rescale >= log2(Delta) - (log2 N + 7); key switching adds noise of the same order
(one more bit).
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import (
    LevelExhaustedError,
    LevelMismatchError,
    MissingKeyError,
    ScaleMismatchError,
    galois_element,
)



def bits(err) -> float:
    """Precision in bits: -log2 of the max absolute error."""
    return float(-np.log2(np.max(np.abs(err)) + 1e-300))


def logn(kit):
    return kit.p.N.bit_length() - 1


def test_encrypt_decrypt_public_and_secret_key(kit):
    from refimpl.ckks import Encryptor
    from refimpl.ring.sampling import RandomSource

    z = kit.random_slots()
    assert bits(kit.decrypt(kit.encrypt(z)) - z) >= 40 - (logn(kit) + 5)
    sym = Encryptor(kit.sk, RandomSource.insecure_seeded(5))
    ct = sym.encrypt(kit.enc.encode(z))
    assert bits(kit.decrypt(ct) - z) >= 40 - (logn(kit) + 2)  # secret key: only e, no v e + e_1 s


def test_decryption_identity_exact_with_zero_noise(kit):
    """With ZeroNoise, c_0 + c_1 s = m exactly (the algebra, no approximation)."""
    from refimpl.ckks import Encryptor
    from refimpl.ring.sampling import ZeroNoise

    pt = kit.enc.encode_coeffs(np.arange(16) - 8.0, scale=1.0)
    ct = Encryptor(kit.sk, ZeroNoise.insecure_seeded(3)).encrypt(pt)
    assert np.array_equal(kit.D.decrypt(ct).poly, pt.poly)


def test_add_sub_negate(kit):
    z, w = kit.random_slots(), kit.random_slots()
    a, b = kit.encrypt(z), kit.encrypt(w)
    bound = 40 - (logn(kit) + 6)
    assert bits(kit.decrypt(kit.ev.add(a, b)) - (z + w)) >= bound
    assert bits(kit.decrypt(kit.ev.sub(a, b)) - (z - w)) >= bound
    assert bits(kit.decrypt(kit.ev.negate(a)) + z) >= bound
    assert bits(kit.decrypt(kit.ev.add_const(a, 0.5 - 0.25j)) - (z + 0.5 - 0.25j)) >= bound


def test_mul_relin_rescale(kit):
    z, w = kit.random_slots(), kit.random_slots()
    a, b = kit.encrypt(z), kit.encrypt(w)
    m = kit.ev.mul_rescale(a, b)
    assert m.level == kit.p.L - 1
    assert m.scale == pytest.approx(2.0**80 / kit.p.q[kit.p.L], rel=1e-15)  # Delta^2 / q_L exactly
    assert bits(kit.decrypt(m) - z * w) >= 40 - (logn(kit) + 7)


def test_plaintext_and_constant_products(kit):
    z, w = kit.random_slots(), kit.random_slots()
    a = kit.encrypt(z)
    pm = kit.ev.rescale(kit.ev.mul_plain(a, kit.enc.encode(w)))
    assert bits(kit.decrypt(pm) - z * w) >= 40 - (logn(kit) + 7)
    c = kit.ev.rescale(kit.ev.mul_const(a, -0.75))
    assert c.scale == pytest.approx(a.scale, rel=1e-15)  # constant encoded at q_l: scale kept
    assert bits(kit.decrypt(c) + 0.75 * z) >= 40 - (logn(kit) + 6)
    assert bits(kit.decrypt(kit.ev.mul_int(a, 3)) - 3 * z) >= 40 - (logn(kit) + 7)


def test_depth_chain_to_level_zero(kit):
    """Square repeatedly down to level 0; one more rescale says how many levels are missing."""
    x = kit.rng.uniform(0.5, 1.0, kit.p.slots)
    ct = kit.encrypt(x)
    ref = x.copy()
    while ct.level > 0:
        ct = kit.ev.rescale(kit.ev.square(ct))  # level l -> l-1, scale s^2 / q_l
        ref = ref * ref
    # each squaring at most doubles the absolute error (|x| <= 1): six squarings add 6 bits
    assert bits(kit.decrypt(ct) - ref) >= 40 - (logn(kit) + 12)
    with pytest.raises(LevelExhaustedError, match="needs 1 level"):
        kit.ev.rescale(ct)


@given(r=st.integers(-3000, 3000))
@settings(max_examples=8)
def test_rotate_any_generated_step(kit, r):
    steps = [1, -1, 2, 5, -7, 100, 1000]
    r = steps[abs(r) % len(steps)]
    z = kit.random_slots()
    ct = kit.ev.rotate(kit.encrypt(z), r)
    assert bits(kit.decrypt(ct) - np.roll(z, -r)) >= 40 - (logn(kit) + 8)


def test_rotate_hoisted_equals_rotate(kit):
    z = kit.random_slots()
    ct = kit.encrypt(z)
    out = kit.ev.rotate_hoisted(ct, [1, 5, -7, 0])
    for r, c in out.items():
        assert bits(kit.decrypt(c) - np.roll(z, -r)) >= 40 - (logn(kit) + 8)


def test_conjugate(kit):
    z = kit.random_slots()
    assert bits(kit.decrypt(kit.ev.conjugate(kit.encrypt(z))) - np.conj(z)) >= 40 - (logn(kit) + 8)


@pytest.mark.parametrize("k_of", [lambda N: N // 2 + 1, lambda N: N // 4 + 1, lambda N: 2 * N - 3])
def test_subs_matches_coefficient_automorphism(kit, k_of):
    """subs(ct, k) decrypts to m(X^k): checked on the coefficients (NEXUS uses k = N/2^i + 1)."""
    N = kit.p.N
    k = k_of(N)
    v = kit.rng.uniform(-1, 1, N)
    ct = kit.E.encrypt(kit.enc.encode_coeffs(v))
    out = kit.enc.decode_coeffs(kit.D.decrypt(kit.ev.subs(ct, k)))
    want = np.zeros(N)
    e = (np.arange(N) * k) % (2 * N)
    np.add.at(want, e % N, np.where(e >= N, -v, v))
    assert np.max(np.abs(out - want)) < 2.0 ** -(40 - (logn(kit) + 8))  # a coefficient error is at most the slot bound


@given(j=st.integers(-10000, 10000))
@settings(max_examples=10)
def test_monomial_multiply_is_a_negacyclic_shift(kit, j):
    N = kit.p.N
    v = kit.rng.uniform(-1, 1, N)
    ct = kit.E.encrypt(kit.enc.encode_coeffs(v))
    out = kit.enc.decode_coeffs(kit.D.decrypt(kit.ev.mul_monomial(ct, j)))
    jj = j % (2 * N)
    idx = np.arange(N) + jj
    sign = np.where((idx // N) % 2 == 1, -1.0, 1.0)
    want = np.zeros(N)
    want[idx % N] = sign * v
    assert np.max(np.abs(out - want)) < 2.0**-20


def test_errors_name_both_operands(kit):
    z = kit.random_slots()
    a = kit.encrypt(z)
    low = kit.ev.drop_level(a, a.level - 2)
    with pytest.raises(LevelMismatchError, match=r"left at level 6.*right at level 4.*drop_level"):
        kit.ev.add(a, low)
    sq = kit.ev.rescale(kit.ev.square(a))
    with pytest.raises(ScaleMismatchError, match=r"scales differ \(left 2\^40\.0000 at level 5, right 2\^"):
        kit.ev.add(kit.ev.drop_level(a, 5), sq)
    with pytest.raises(MissingKeyError, match=r"Galois key of element %d" % galois_element(kit.p, 3)):
        kit.ev.rotate(a, 3)
    from refimpl.ckks import Evaluator

    with pytest.raises(MissingKeyError, match="relinearization key"):
        Evaluator(kit.p).multiply(a, a)


def test_operations_do_not_mutate_inputs(kit):
    a = kit.encrypt(kit.random_slots())
    snap = [c.copy() for c in a.c]
    for f in (lambda: kit.ev.rotate(a, 1), lambda: kit.ev.mul_rescale(a, a), lambda: kit.ev.add(a, a),
              lambda: kit.ev.mul_monomial(a, 5), lambda: kit.ev.drop_level(a, 2)):
        f()
    assert all(np.array_equal(x, y) for x, y in zip(a.c, snap))


def test_complex_and_vector_constants(kit):
    z = kit.random_slots()
    a = kit.encrypt(z)
    c = kit.ev.rescale(kit.ev.mul_const(a, 0.5 - 1.25j))
    assert bits(kit.decrypt(c) - (0.5 - 1.25j) * z) >= 40 - (logn(kit) + 7)
    v = kit.random_slots()
    c = kit.ev.rescale(kit.ev.mul_const(a, v))
    assert bits(kit.decrypt(c) - v * z) >= 40 - (logn(kit) + 7)
    assert bits(kit.decrypt(kit.ev.add_const(a, v)) - (v + z)) >= 40 - (logn(kit) + 6)


def test_rescale_rounds_without_bias(kit):
    """CKKS-RESCALE-1: rescale = round(c / q_l) per coefficient: the error of a noiseless
    ciphertext is eps_0 + eps_1 s with eps uniform in [-1/2, 1/2): mean 0 and std sqrt(N/18)
    for a uniform ternary s (a floor instead of a round shows as a mean of about sum(s)/2)."""
    from refimpl.ckks import Encryptor
    from refimpl.ckks.encoder import unembed
    from refimpl.ring.sampling import ZeroNoise

    p = kit.p
    z = kit.random_slots(complex_=False)
    ct = Encryptor(kit.sk, ZeroNoise.insecure_seeded(4)).encrypt(kit.enc.encode(z, scale=p.scale * float(p.q[p.L])))
    r = kit.ev.rescale(ct)
    basis = p.q_basis(r.level)
    coeff = np.array(p.ctx.reconstruct(p.ctx.intt(kit.D.decrypt(r).poly, basis), basis), dtype=float)
    diff = coeff - unembed(z.astype(complex), p.N) * p.scale
    theory = np.sqrt(p.N / 18)
    assert abs(diff.mean()) < 4 * theory / np.sqrt(p.N) + 0.5
    assert 0.8 * theory < diff.std() < 1.25 * theory


def test_seed_only_keys_rotate_the_same(kit):
    """Keys that keep only b and the seeds of a (expand=False) hold half the bytes and rotate alike."""
    from refimpl.ckks import Decryptor, Encryptor, Evaluator, KeyGenerator
    from refimpl.ring.sampling import RandomSource

    lazy_kg, full_kg = KeyGenerator(kit.p, RandomSource.insecure_seeded(1), expand_keys=False), KeyGenerator(kit.p, RandomSource.insecure_seeded(1))
    sk, sk2 = lazy_kg.secret_key(), full_kg.secret_key()
    k_lazy = lazy_kg.galois_key(sk, galois_element(kit.p, 1))
    k_full = full_kg.galois_key(sk2, galois_element(kit.p, 1))
    assert 2 * k_lazy.nbytes == k_full.nbytes
    assert all(np.array_equal(k_lazy.a(j), k_full.a(j)) for j in range(kit.p.dnum))
    from refimpl.ckks import EvaluationKeys

    ev = Evaluator(kit.p, EvaluationKeys(galois={galois_element(kit.p, 1): k_lazy}))
    z = kit.random_slots()
    ct = Encryptor(sk, RandomSource.insecure_seeded(3)).encrypt(kit.enc.encode(z))
    out = kit.enc.decode(Decryptor(sk).decrypt(ev.rotate(ct, 1)))
    assert bits(out - np.roll(z, -1)) >= 40 - (logn(kit) + 8)


def test_levels_left_counts_the_rescales_still_possible(kit):
    """Ciphertext.levels_left: L on a fresh ciphertext, one less per rescale, the drop_level target; 0: no rescale."""
    ct = kit.encrypt(kit.random_slots())
    assert ct.levels_left == kit.p.L == 6
    seen = [ct.levels_left]
    while ct.levels_left:
        ct = kit.ev.rescale(kit.ev.mul_const(ct, 0.5))
        seen.append(ct.levels_left)
    assert seen == [6, 5, 4, 3, 2, 1, 0]
    assert kit.ev.drop_level(kit.encrypt([0.5]), 2).levels_left == 2
    with pytest.raises(LevelExhaustedError):
        kit.ev.rescale(ct)


def test_sub_plain_against_numpy_and_exactly(kit):
    """Evaluator.sub_plain: slotwise x - y to the encryption noise (numpy as reference); exactly the
    inverse of add_plain on the residues; only c_0 changes; a plaintext at another level is refused."""
    x, y = kit.random_slots(), kit.random_slots()
    a, pt = kit.encrypt(x), kit.enc.encode(y)
    d = kit.ev.sub_plain(a, pt)
    assert bits(kit.decrypt(d) - (x - y)) >= 40 - (logn(kit) + 6)
    back = kit.ev.add_plain(d, pt)
    assert all(np.array_equal(u, v) for u, v in zip(back.c, a.c))  # (a - p) + p = a mod every q_i
    assert np.array_equal(d.c[1], a.c[1]) and not np.array_equal(d.c[0], a.c[0])
    assert (d.level, d.scale) == (a.level, a.scale)
    with pytest.raises(LevelMismatchError):
        kit.ev.sub_plain(a, kit.enc.encode(y, level=2))
