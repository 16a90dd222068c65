"""Key ids (ours): a ciphertext remembers the key it was encrypted under, and nothing decrypts or
combines it under another key silently (CKKS-KEYID)."""

import struct

import numpy as np
import pytest

from refimpl.ckks import (
    Decryptor,
    Encoder,
    Encryptor,
    Evaluator,
    KeyGenerator,
    KeyMismatchError,
)
from refimpl.ckks import serialize as ser
from refimpl.ckks.errors import SerializationError
from refimpl.ring.sampling import RandomSource


@pytest.fixture(scope="module")
def other(kit):
    """A second key set of the same parameters (another client)."""
    kg = KeyGenerator(kit.p, RandomSource.insecure_seeded(99))
    sk = kg.secret_key()
    pk = kg.public_key(sk)
    return sk, pk, kg.evaluation_keys(sk, rotations=[1])


def test_every_key_and_ciphertext_of_one_secret_shares_its_id(kit, other):
    """CKKS-KEYID: secret, public and evaluation keys and the ciphertexts share one 8-byte id; another secret, another id."""
    ids = {kit.sk.key_id, kit.pk.key_id, kit.ek.key_id, kit.ek.relin.key_id,
           kit.encrypt(kit.random_slots()).key_id, Encryptor(kit.sk).encrypt(kit.enc.encode([0.5])).key_id}
    assert len(ids) == 1 and len(kit.sk.key_id) == 8
    assert other[0].key_id != kit.sk.key_id and other[1].key_id == other[0].key_id
    assert KeyGenerator(kit.p, RandomSource.insecure_seeded(1)).secret_key().key_id == kit.sk.key_id  # same s, same id
    assert kit.sk.key_id not in np.asarray(kit.sk.coeffs, dtype=np.int8).tobytes()


def test_decryptor_refuses_a_ciphertext_of_another_key(kit, other):
    """CKKS-KEYID: decrypting under a foreign secret key is one clear error naming both ids, not garbage."""
    ct = kit.encrypt(kit.random_slots())
    with pytest.raises(KeyMismatchError, match=f"encrypted under key {ct.key_id.hex()}.*{other[0].key_id.hex()}"):
        Decryptor(other[0]).decrypt(ct)
    x = kit.random_slots()
    assert np.max(np.abs(kit.decrypt(kit.encrypt(x)) - x)) < 2**-20  # its own key still decrypts


def test_evaluated_ciphertexts_keep_the_id(kit):
    """CKKS-KEYID: products, rescales, rotations and level drops keep the key id."""
    ev, a = kit.ev, kit.encrypt(kit.random_slots())
    out = ev.rotate(ev.rescale(ev.multiply(a, ev.add_plain(a, kit.enc.encode(kit.random_slots())))), 1)
    assert out.key_id == kit.sk.key_id
    assert ev.drop_level(ev.sub(a, a), 2).key_id == kit.sk.key_id


def test_evaluator_refuses_ciphertexts_of_different_keys(kit, other):
    """CKKS-KEYID: a sum of ciphertexts of two keys, or a rotation with another key's Galois keys, is refused."""
    ct_b = Encryptor(other[1], RandomSource.insecure_seeded(3)).encrypt(kit.enc.encode([0.25]))
    ct_a = kit.encrypt(kit.random_slots())
    with pytest.raises(KeyMismatchError, match="add"):
        Evaluator(kit.p).add(ct_a, ct_b)
    with pytest.raises(KeyMismatchError, match="rotate"):
        Evaluator(kit.p, other[2]).rotate(ct_a, 1)
    with pytest.raises(KeyMismatchError, match="multiply"):
        kit.ev.multiply(ct_a, ct_b)


def test_serialized_objects_carry_the_id(kit, other):
    """CKKS-KEYID: the id travels with serialized ciphertexts and keys; the receiver still refuses a foreign ciphertext."""
    ct = ser.deserialize_ciphertext(ser.serialize_ciphertext(kit.encrypt(kit.random_slots())), kit.p)
    assert ct.key_id == kit.sk.key_id
    with pytest.raises(KeyMismatchError):
        Decryptor(other[0]).decrypt(ct)
    assert ser.deserialize_public_key(ser.serialize_public_key(kit.pk), kit.p).key_id == kit.sk.key_id
    assert ser.deserialize_switching_key(ser.serialize_switching_key(kit.ek.relin), kit.p).key_id == kit.sk.key_id
    ek = ser.deserialize_evaluation_keys(ser.serialize_evaluation_keys(other[2], kit.p), kit.p)
    assert ek.key_id == other[0].key_id


def test_older_format_is_refused_with_a_clear_error(kit):
    """CKKS-KEYID: a blob of format version 2 (no key id) is refused, naming the version."""
    blob = bytearray(ser.serialize_ciphertext(kit.encrypt([0.5])))
    struct.pack_into("<H", blob, 4, 2)
    with pytest.raises(SerializationError, match="format version 2.*reads version 3"):
        ser.deserialize_ciphertext(bytes(blob), kit.p)


def test_encoder_unchanged_by_key_ids(kit):
    """Plaintexts carry no key: the encoder's output decodes as before."""
    x = kit.random_slots()
    assert np.max(np.abs(Encoder(kit.p).decode(kit.enc.encode(x)) - x)) < 2**-30
