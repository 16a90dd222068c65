"""CKKS-SEC-1 (security check), CKKS-SER-1 (serialization), parameter validation."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import InsecureParametersError, ParameterError, Parameters, SerializationError, preset
from refimpl.ckks.params import MAX_LOG_QP_128, PRESETS
from refimpl.ckks import serialize as S
from refimpl.constants import C


def test_security_bounds_come_from_the_spec():
    assert MAX_LOG_QP_128[2**13] == 218 and MAX_LOG_QP_128[2**15] == 881
    assert MAX_LOG_QP_128 == {int(k): v for k, v in C["ckks"]["max_log_qp_128"].items()}


@pytest.mark.parametrize("name", [n for n in PRESETS if n.startswith("128")])
def test_128_bit_presets_are_within_the_bound(name):
    p = preset(name)
    assert p.log_qp <= MAX_LOG_QP_128[p.N] and p.security_bits == 128
    assert max(np.prod([float(p.q[i]) for i in d]) for d in p.digits) < np.prod([float(x) for x in p.p])


def test_insecure_parameters_are_refused_unless_asked():
    with pytest.raises(InsecureParametersError, match=r"exceeds the 128-bit bound for N = 4096 \(109 bits"):
        Parameters.create(N=4096, levels=6)
    p = Parameters.create(N=4096, levels=6, insecure=True)
    assert p.security_bits == 0 and "INSECURE" in p.security_note


def test_parameter_validation():
    with pytest.raises(ParameterError, match="power of two"):
        Parameters.create(N=1000, levels=2, insecure=True)
    p = Parameters.create(N=64, levels=2, insecure=True)
    with pytest.raises(ParameterError, match="not 1 mod 2N"):
        Parameters(N=64, q=(p.q[0], 1000003), p=p.p, scale=2.0**40, digits=((0,), (1,)), insecure=True)
    with pytest.raises(ParameterError, match="distinct"):
        Parameters(N=64, q=(p.q[0], p.q[0]), p=p.p, scale=2.0**40, digits=((0,), (1,)), insecure=True)
    with pytest.raises(ParameterError, match="partition"):
        Parameters(N=64, q=p.q, p=p.p, scale=2.0**40, digits=((0,),), insecure=True)
    with pytest.raises(ParameterError, match="must exceed every digit"):
        Parameters(N=64, q=p.q, p=p.p, scale=2.0**40, digits=(tuple(range(len(p.q))),), insecure=True)
    with pytest.raises(ParameterError, match="Hamming weight"):
        Parameters.create(N=64, levels=2, secret="sparse", insecure=True)


def test_ciphertext_roundtrip_and_size(kit):
    ct = kit.ev.rescale(kit.ev.square(kit.encrypt(kit.random_slots())))
    data = S.serialize_ciphertext(ct)
    back = S.deserialize_ciphertext(data, kit.p)
    assert back.level == ct.level and back.scale == ct.scale
    assert all(np.array_equal(a, b) for a, b in zip(back.c, ct.c))
    # bit-packed: each residue costs bitlen(q_i) bits
    payload_bits = 2 * kit.p.N * sum(kit.p.q[i].bit_length() for i in range(ct.level + 1))
    assert len(data) == 4 + 2 + 1 + 8 + 8 + 11 + payload_bits // 8 + 4  # head (with the key id), level, size, scale, CRC


def test_plaintext_and_key_roundtrips(kit):
    pt = kit.enc.encode(kit.random_slots(), level=3)
    back = S.deserialize_plaintext(S.serialize_plaintext(pt), kit.p)
    assert np.array_equal(back.poly, pt.poly) and back.level == 3
    pk = S.deserialize_public_key(S.serialize_public_key(kit.pk), kit.p)
    assert np.array_equal(pk.a, kit.pk.a) and np.array_equal(pk.b, kit.pk.b)
    ek = S.deserialize_evaluation_keys(S.serialize_evaluation_keys(kit.ek, kit.p), kit.p)
    assert sorted(ek.galois) == sorted(kit.ek.galois)
    for g in kit.ek.galois:
        d = kit.p.dnum
        assert all(np.array_equal(ek.galois[g].a(j), kit.ek.galois[g].a(j)) for j in range(d))  # a from seeds
        assert all(np.array_equal(x, y) for x, y in zip(ek.galois[g].b, kit.ek.galois[g].b))


@given(pos=st.integers(0, 10**9), bit=st.integers(0, 7))
@settings(max_examples=15)
def test_corrupted_bytes_are_rejected(kit, pos, bit):
    data = bytearray(S.serialize_ciphertext(kit.encrypt(kit.random_slots(), level=1)))
    data[pos % len(data)] ^= 1 << bit
    with pytest.raises(SerializationError):
        S.deserialize_ciphertext(bytes(data), kit.p)


@given(cut=st.integers(1, 10**9))
@settings(max_examples=10)
def test_truncated_bytes_are_rejected(kit, cut):
    data = S.serialize_ciphertext(kit.encrypt(kit.random_slots(), level=1))
    with pytest.raises(SerializationError):
        S.deserialize_ciphertext(data[: cut % len(data)], kit.p)


def test_mismatched_kind_and_parameters_are_rejected(kit):
    data = S.serialize_ciphertext(kit.encrypt(kit.random_slots(), level=1))
    with pytest.raises(SerializationError, match="expected a serialized plaintext, got a ciphertext"):
        S.deserialize_plaintext(data, kit.p)
    other = Parameters.create(N=4096, levels=6, log_qi=41, insecure=True)
    with pytest.raises(SerializationError, match="other parameters"):
        S.deserialize_ciphertext(data, other)
    with pytest.raises(SerializationError, match="not refimpl CKKS data"):
        S.deserialize_ciphertext(b"XXXX" + data[4:], kit.p)


def test_sparse_secret_uses_its_own_bound():
    """A sparse secret (h = 192) at N = 2^16 is held to Lattigo's 1546-bit bound, not 1761."""
    from refimpl.ckks.params import security_bound

    assert security_bound(2**16, "sparse", 192) == 1546 and security_bound(2**16, "ternary", None) == 1761
    assert security_bound(2**15, "sparse", 192) is None  # no estimate known: refused unless insecure
    with pytest.raises(InsecureParametersError, match="sparse secret h = 64"):
        Parameters.create(N=2**15, levels=2, secret="sparse", h=64)
