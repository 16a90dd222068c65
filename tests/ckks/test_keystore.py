"""The key store's files (refimpl.ckks.keystore): keys memory-mapped on use come back equal to the keys
written, switch a ciphertext as the in-memory key does, stay within the bound, are converted from the
protocol's packed files, and a damaged or foreign file is refused with one SerializationError."""

import numpy as np
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, EvaluationKeys, Evaluator, KeyGenerator, Parameters
from refimpl.ckks.errors import SerializationError
from refimpl.ckks.keys import galois_element
from refimpl.ckks.keystore import HEADER_BYTES, KeyStore, key_path
from refimpl.ckks.serialize import serialize_switching_key
from refimpl.ring.sampling import RandomSource


@pytest.fixture(scope="module")
def keys():
    p = Parameters.create(N=1024, levels=4, log_q0=50, log_qi=40, log_p=50, num_p=2, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(3), expand_keys=False)
    sk = kg.secret_key()
    made = {galois_element(p, r): kg.galois_key(sk, galois_element(p, r), level=lv) for r, lv in ((1, 4), (3, 2), (-2, 1))}
    return p, sk, kg, made


def same(a, b):
    return (a.level == b.level and a.a_seeds == b.a_seeds and a.key_id == b.key_id and not a.expand
            and all(np.array_equal(x, y) for x, y in zip(a.b, b.b, strict=True)))


def test_mapped_keys_equal_the_written_within_the_bound(keys, tmp_path):
    p, sk, kg, made = keys
    for g, k in made.items():
        KeyStore.write(tmp_path, g, k)
    limit = sum(k.nbytes for k in made.values()) - 1  # room for two of the three
    store = KeyStore(tmp_path, p, limit_bytes=limit)
    assert sorted(store) == sorted(made) and store.key_id == sk.key_id
    for g in [*made, *made]:
        assert same(store[g], made[g])
        assert store.held_bytes <= limit
    assert store.loads > len(made) and store.verified == set(made)  # some mapped again, each checked once
    enc, E = Encoder(p), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4))
    x = E.encrypt(enc.encode(np.arange(8.0), level=4))
    g1 = galois_element(p, 1)
    a = Evaluator(p, EvaluationKeys(galois={g1: made[g1]})).rotate(x, 1)
    b = Evaluator(p, EvaluationKeys(galois=store)).rotate(x, 1)
    assert all(np.array_equal(u, v) for u, v in zip(a.c, b.c, strict=True))
    assert np.allclose(enc.decode(Decryptor(sk).decrypt(b)).real[:7], np.arange(1.0, 8.0), atol=1e-3)


def test_release_unmaps_and_the_next_use_maps_again_unchecked(keys, tmp_path):
    p, sk, kg, made = keys
    for g, k in made.items():
        KeyStore.write(tmp_path, g, k)
    store = KeyStore(tmp_path, p, limit_bytes=2**40)
    g = next(iter(made))
    first = store[g]
    loads, before = store.loads, store.held_bytes
    store.release(g)
    assert g not in store.held and store.held_bytes == before - first.nbytes
    assert same(store[g], made[g]) and store.loads == loads + 1 and store.verified >= {g}
    for h in made:
        store[h]
    store.release()
    assert not store.held and store.held_bytes == 0
    store.release(g)  # releasing a key not held does nothing
    assert store.held_bytes == 0


def test_packed_files_are_converted(keys, tmp_path):
    p, _, _, made = keys
    for g, k in made.items():
        (tmp_path / f"g{g}.key").write_bytes(serialize_switching_key(k))
    assert KeyStore.convert(tmp_path, p) == len(made) and not list(tmp_path.glob("*.key"))
    assert KeyStore.convert(tmp_path, p) == 0
    store = KeyStore(tmp_path, p, limit_bytes=1 << 30)
    assert all(same(store[g], k) for g, k in made.items())


def damaged(path, at, value=None):
    data = bytearray(path.read_bytes())
    if value is None:
        data[at] ^= 1
    else:
        data[at:at + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how, match", [
    (lambda f: damaged(f, HEADER_BYTES + 100), "checksum mismatch"),
    (lambda f: damaged(f, 0, b"XXXX"), "not a refimpl key file"),
    (lambda f: f.write_bytes(f.read_bytes()[:-8]), "corrupted or truncated"),
    (lambda f: f.write_bytes(f.read_bytes()[:100]), "truncated"),
])
def test_a_damaged_file_is_refused(keys, tmp_path, how, match):
    p, _, _, made = keys
    g = next(iter(made))
    KeyStore.write(tmp_path, g, made[g])
    how(key_path(tmp_path, g))
    with pytest.raises(SerializationError, match=match):
        KeyStore(tmp_path, p, limit_bytes=1 << 30)


def test_a_residue_above_its_prime_is_refused(keys, tmp_path):
    """The checksum of the body matches, but one residue is q_0 itself: malformed, not corrupted."""
    p, _, _, made = keys
    g = next(iter(made))
    k = made[g]
    bad = type(k)((k.b[0].copy(), *k.b[1:]), k.a_seeds, p, expand=False, level=k.level, key_id=k.key_id)
    bad.b[0][0, 5] = p.q[0]
    KeyStore.write(tmp_path, g, bad)
    with pytest.raises(SerializationError, match="not below its prime"):
        KeyStore(tmp_path, p, limit_bytes=1 << 30)


def test_keys_of_other_parameters_are_refused(keys, tmp_path):
    p, _, _, made = keys
    g = next(iter(made))
    KeyStore.write(tmp_path, g, made[g])
    other = Parameters.create(N=1024, levels=4, log_q0=50, log_qi=41, log_p=50, num_p=2, insecure=True)
    with pytest.raises(SerializationError, match="other parameters"):
        KeyStore(tmp_path, other, limit_bytes=1 << 30)


def test_the_key_load_measurement_runs_and_states_its_security():
    from refimpl.experiments.key_load import measure

    doc = measure("toy-2^10-dense", repeats=1)
    assert "INSECURE" in doc["security"] and doc["N"] == 1024
    assert doc["mapped_bytes"] >= doc["key_bytes_in_memory"] > doc["packed_bytes"]
    assert all(len(v) == 1 and v[0] > 0 for v in doc["all_s"].values())
