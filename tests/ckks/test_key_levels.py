"""CKKS-KEY-LEVEL: switching keys defined over Q_level P only (what a rotation needs that runs
at or below `level`), checked against keys over the whole chain and by brute-force counts."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import EvaluationKeys, Evaluator, KeyGenerator
from refimpl.ckks import serialize as ser
from refimpl.ckks.errors import KeyLevelError, ParameterError, SerializationError
from refimpl.ckks.keys import galois_element, key_rows
from refimpl.ring.sampling import RandomSource


def bits(err) -> float:
    return -np.log2(np.max(np.abs(err)) + 1e-300)


@given(key_level=st.integers(0, 6), data=st.data())
@settings(max_examples=10, deadline=None)
def test_key_at_level_rotates_every_lower_level(kit, key_level, data):
    """A key for level l rotates ciphertexts at every level <= l as a full key does."""
    p = kit.p
    ct_level = data.draw(st.integers(0, key_level))
    k = galois_element(p, 5)
    key = KeyGenerator(p, RandomSource.insecure_seeded(7)).switching_key(kit.sk, _sigma(kit, k), level=key_level)
    ev = Evaluator(p, EvaluationKeys(galois={k: key}))
    z = kit.random_slots()
    ct = kit.encrypt(z, level=ct_level)
    out = kit.decrypt(ev.rotate(ct, 5))
    full = kit.decrypt(kit.ev.rotate(ct, 5))
    assert bits(out - np.roll(z, -5)) >= 40 - 20 and bits(out - np.roll(z, -5)) >= bits(full - np.roll(z, -5)) - 2


def _sigma(kit, k):
    from refimpl.ring.automorphism import automorphism_ntt

    return automorphism_ntt(kit.sk.s_ntt, k)


def test_key_level_shape_counts_digits_and_rows(kit):
    """Rows q_0..q_l and P; the digits that meet q_0..q_l (counted by brute force); fewer bytes."""
    p = kit.p
    kg = KeyGenerator(p, RandomSource.insecure_seeded(8))
    full = kg.galois_key(kit.sk, galois_element(p, 1))
    assert full.level == p.L and len(full.b) == p.dnum and full.rows == tuple(range(len(p.q) + len(p.p)))
    for level in range(p.L + 1):
        key = kg.galois_key(kit.sk, galois_element(p, 1), level=level)
        digits = sum(1 for d in p.digits if any(i <= level for i in d))
        assert len(key.b) == digits and len(key.a_seeds) == digits
        assert all(b.shape == (level + 1 + len(p.p), p.N) for b in key.b)
        assert key.rows == key_rows(p, level) and key.nbytes <= full.nbytes
    assert kg.galois_key(kit.sk, galois_element(p, 1), level=0).nbytes < full.nbytes / 4


def test_rotation_above_the_key_level_raises(kit):
    p = kit.p
    k = galois_element(p, 1)
    key = KeyGenerator(p, RandomSource.insecure_seeded(9)).galois_key(kit.sk, k, level=2)
    ev = Evaluator(p, EvaluationKeys(galois={k: key}))
    ev.rotate(kit.encrypt(kit.random_slots(), level=2), 1)
    with pytest.raises(KeyLevelError, match="levels <= 2 cannot switch a ciphertext at level 3"):
        ev.rotate(kit.encrypt(kit.random_slots(), level=3), 1)
    with pytest.raises(ParameterError, match="level must be in"):
        KeyGenerator(p, RandomSource.insecure_seeded(9)).galois_key(kit.sk, k, level=p.L + 1)


@pytest.mark.parametrize("level", [0, 3, 6])
def test_key_level_serialization_round_trip(kit, level):
    """Level, seeds and b survive bytes; the size formula is the real size; a bad level raises."""
    from refimpl.nexus.protocol import switching_key_nbytes

    p = kit.p
    key = KeyGenerator(p, RandomSource.insecure_seeded(10)).galois_key(kit.sk, galois_element(p, 1), level=level)
    data = ser.serialize_switching_key(key)
    assert len(data) == switching_key_nbytes(p, level)
    back = ser.deserialize_switching_key(data, p)
    assert back.level == level and back.a_seeds == key.a_seeds
    assert all(np.array_equal(x, y) for x, y in zip(back.b, key.b))
    assert all(np.array_equal(back.a(j), key.a(j)) for j in range(len(key.b)))
    head = ser.HEAD.size
    bad = bytearray(data)
    bad[head + 2:head + 4] = (p.L + 1).to_bytes(2, "little")
    import zlib

    bad[-4:] = zlib.crc32(bytes(bad[:-4])).to_bytes(4, "little")
    with pytest.raises(SerializationError, match="above the chain's top level"):
        ser.deserialize_switching_key(bytes(bad), p)


def test_bootstrapping_with_keys_at_galois_levels():
    """Bootstrapper.galois_levels is enough (same precision as full keys) and tight (one key a
    level lower makes bootstrapping refuse)."""
    from refimpl.ckks import Decryptor, Encoder, Encryptor
    from refimpl.ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_preset

    p, rc = bootstrap_preset("toy-2^10-dense")
    kg = KeyGenerator(p, RandomSource.insecure_seeded(31))
    sk = kg.secret_key()
    enc_keys = kg.encapsulation_keys(sk, kg.secret_key(hamming_weight=rc.encapsulation_h))
    levels = Bootstrapper(Evaluator(p), rc).galois_levels()
    assert sorted(levels) == Bootstrapper(Evaluator(p), rc).galois_elements()
    assert max(levels.values()) == p.L and min(levels.values()) < p.L  # the conjugation runs below the top
    z = np.random.default_rng(4).uniform(-1, 1, p.slots)
    enc = Encoder(p)
    ct = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(32)).encrypt(enc.encode(z, level=0))
    ek = kg.evaluation_keys(sk, elements=list(levels), levels=levels)
    out = Bootstrapper(Evaluator(p, ek), rc, encapsulation=enc_keys).bootstrap(ct)
    assert bits(enc.decode(Decryptor(sk).decrypt(out)).real - z) >= 18
    k_low = min(levels, key=levels.get)
    short = {**ek.galois, k_low: kg.galois_key(sk, k_low, level=levels[k_low] - 1)}
    bs = Bootstrapper(Evaluator(p, EvaluationKeys(relin=ek.relin, galois=short)), rc, encapsulation=enc_keys)
    with pytest.raises(KeyLevelError):
        bs.bootstrap(ct)
