"""Boundary checks: every entry point refuses what the encoder and evaluator never produce
(CKKS-CHECK-*, CKKS-SEC-1, CKKS-SEC-SIGMA)."""

import math
import struct
import zlib

import pytest

import refimpl.ckks.params as params_mod
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters, SerializationError
from refimpl.ckks.checks import SCALE_FLOOR
from refimpl.ckks.ciphertext import Ciphertext, with_scale
from refimpl.ckks.errors import InsecureParametersError, ParameterError, ParameterMismatchError, ScaleRangeError
from refimpl.ckks.params import SIGMA_MIN_128
from refimpl.ckks.serialize import (
    HEAD, deserialize_ciphertext, deserialize_evaluation_keys, deserialize_plaintext, serialize_ciphertext,
    serialize_evaluation_keys, serialize_plaintext,
)
from refimpl.ring.sampling import RandomSource


@pytest.fixture(scope="module")
def other():
    """A second, smaller parameter set with its own keys (N = 2^10)."""
    p = Parameters.create(N=1024, levels=3, log_q0=50, log_qi=30, log_p=50, num_p=1, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(3))
    sk = kg.secret_key()
    return p, sk, Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4)), Encoder(p)


def test_evaluator_refuses_operands_of_other_parameters(kit, other):
    """CKKS-CHECK-PARAMS: add, rotate, multiply, rescale, ... of another parameter set's ciphertext raise
    ParameterMismatchError naming the operand; a fresh Evaluator of those parameters accepts it."""
    p2, _, E2, enc2 = other
    mine = kit.encrypt(kit.random_slots())
    theirs = E2.encrypt(enc2.encode([0.5] * 4))
    ev = kit.ev
    for op in (lambda: ev.add(mine, theirs), lambda: ev.rotate(theirs, 1), lambda: ev.rescale(theirs),
               lambda: ev.multiply(theirs, theirs), lambda: ev.mul_const(theirs, 2.0),
               lambda: ev.add_plain(mine, enc2.encode([1.0])), lambda: ev.negate(theirs)):
        with pytest.raises(ParameterMismatchError, match="belongs to other parameters .*N = 1024"):
            op()
    assert Evaluator(p2).negate(theirs).level == theirs.level


def test_decrypting_another_ring_size_raises(kit, other):
    """CKKS-CHECK-PARAMS: an N = 2^10 ciphertext under an N = 2^12 key (and back) raises, never reads out of bounds;
    so does a ciphertext whose arrays do not match its level."""
    p2, sk2, E2, enc2 = other
    small = E2.encrypt(enc2.encode([0.25]))
    with pytest.raises(ParameterMismatchError, match="other parameters"):
        kit.D.decrypt(small)
    with pytest.raises(ParameterMismatchError, match="other parameters"):
        Decryptor(sk2).decrypt(kit.encrypt([0.25]))
    ct = kit.encrypt([0.25])
    forged = Ciphertext(tuple(c[:, : kit.p.N // 2] for c in ct.c), ct.level, ct.scale, ct.params)
    with pytest.raises(ParameterMismatchError, match=r"component 0 .* shape \(7, 2048\)"):
        kit.D.decrypt(forged)
    assert abs(Encoder(p2).decode(Decryptor(sk2).decrypt(small))[0] - 0.25) < 1e-3


def test_two_products_without_rescale_refused_at_the_modulus(kit):
    """CKKS-CHECK-SCALE: a product whose scale reaches Q_l / 2 is refused (two products without a
    rescale at level 1: 2^120 > Q_1 = 2^100); at the top level the same scale still fits."""
    ev, ct = kit.ev, kit.encrypt([0.5])
    low = ev.drop_level(ct, 1)
    sq = ev.multiply(low, low)  # 2^80 < 2^99: fine
    with pytest.raises(ScaleRangeError, match="two products without a rescale"):
        ev.multiply(sq, low)
    top = ev.multiply(ev.multiply(ct, ct), ct)  # 2^120 at Q_6 ~ 2^300
    assert top.scale == ct.scale**3
    # the exact boundary: Q_1 / 2 = 2^(log2 Q_1 - 1) refused, just below accepted
    room = math.log2(kit.p.q[0]) + math.log2(kit.p.q[1]) - 1.0
    ok = with_scale(low, 2.0 ** (room - 1e-9) / low.scale)
    ev.multiply(ok, low)
    with pytest.raises(ScaleRangeError):
        ev.multiply(with_scale(low, 2.0 ** room / low.scale), low)


def test_scale_below_the_floor_refused(kit):
    """CKKS-CHECK-SCALE: rescaling a fresh ciphertext twice (scale ~ 2^-40) is refused at the next entry
    point; scale exactly SCALE_FLOOR is accepted."""
    ev, ct = kit.ev, kit.encrypt([0.5])
    once = ev.rescale(ct)
    with pytest.raises(ScaleRangeError, match="below the floor"):
        ev.rescale(once) if once.scale < SCALE_FLOOR else ev.rescale(ev.rescale(once))
    ev.negate(with_scale(ct, SCALE_FLOOR))
    with pytest.raises(ScaleRangeError, match="below the floor"):
        ev.negate(with_scale(ct, math.nextafter(SCALE_FLOOR, 0.0)))
    with pytest.raises(ScaleRangeError):
        kit.D.decrypt(with_scale(ct, 5e-324))


def test_absurd_constants_refused(kit):
    """CKKS-CHECK-CONST: at level 2 (Q_2 ~ 2^140) mul_const(1e30) (2^100 at scale 2^80), add_const(1e300),
    mul_int(2^300), a vector holding 1e30, a non-finite constant: refused with the fix; a large
    but fitting constant is accepted and correct."""
    ev = kit.ev
    ct = ev.drop_level(kit.encrypt([0.5]), 2)
    for op in (lambda: ev.mul_const(ct, 1e30), lambda: ev.add_const(ct, 1e300), lambda: ev.mul_int(ct, 2**300),
               lambda: ev.mul_const(ct, [1.0, 1e30])):
        with pytest.raises(ScaleRangeError, match="beyond the modulus"):
            op()
    with pytest.raises(ScaleRangeError, match="not finite"):
        ev.mul_const(ct, float("nan"))
    out = kit.decrypt(ev.rescale(ev.mul_const(ct, 1e3)))
    assert abs(out[0] - 500.0) < 1e-3


def _reseal(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def test_deserializer_refuses_what_the_encoder_never_makes(kit):
    """CKKS-CHECK-SER: a scale of 5e-324, 0.5, 1e300, inf or nan, a component count of 7, a relinearization flag
    byte of 2 or 255: SerializationError (with a valid checksum each time)."""
    ct = kit.encrypt([0.5])
    data = serialize_ciphertext(ct)
    off = HEAD.size + 3  # header (magic, version, kind, fingerprint, key id), level u16, size u8, then the scale (f64)
    for bad in (5e-324, 0.5, 1e300, float("inf"), float("nan")):
        forged = _reseal(data[:off] + struct.pack("<d", bad) + data[off + 8:])
        with pytest.raises(SerializationError, match="scale"):
            deserialize_ciphertext(forged, kit.p)
    forged = _reseal(data[:HEAD.size + 2] + bytes([7]) + data[HEAD.size + 3:])  # the component count
    with pytest.raises(SerializationError, match="7 components"):
        deserialize_ciphertext(forged, kit.p)
    assert deserialize_ciphertext(data, kit.p).scale == ct.scale
    pt = kit.enc.encode([1.0])
    pdata = serialize_plaintext(pt)
    with pytest.raises(SerializationError, match="scale"):
        deserialize_plaintext(_reseal(pdata[:off] + struct.pack("<d", 5e-324) + pdata[off + 8:]), kit.p)

    from refimpl.ckks.keys import EvaluationKeys
    ek = EvaluationKeys(relin=kit.ek.relin, galois=dict(list(kit.ek.galois.items())[:1]))
    edata = serialize_evaluation_keys(ek, kit.p)
    for flag in (2, 255):
        with pytest.raises(SerializationError, match="flag byte"):
            deserialize_evaluation_keys(_reseal(edata[:HEAD.size] + bytes([flag]) + edata[HEAD.size + 1:]), kit.p)
    back = deserialize_evaluation_keys(edata, kit.p)
    assert set(back.galois) == set(ek.galois) and back.relin is not None


def test_security_check_covers_the_error_width():
    """CKKS-SEC-SIGMA: sigma = 0 or 1 is not 128-bit: refused unless insecure=True; sigma exactly
    8 / sqrt(2 pi) is accepted; security_bits is 0 for a narrow error."""
    base = dict(N=2**13, levels=2, num_p=2, log_p=39)
    assert Parameters.create(**base).security_bits == 128
    for sigma in (0.0, 1.0, math.nextafter(SIGMA_MIN_128, 0.0)):
        with pytest.raises(InsecureParametersError, match="error width sigma"):
            Parameters.create(**base, sigma=sigma)
        assert Parameters.create(**base, sigma=sigma, insecure=True).security_bits == 0
    assert Parameters.create(**base, sigma=SIGMA_MIN_128).security_bits == 128
    for bad in (float("nan"), -1.0):
        with pytest.raises(ParameterError, match="finite number"):
            Parameters.create(**base, sigma=bad, insecure=True)


def test_modulus_bound_is_exact(monkeypatch):
    """CKKS-SEC-1: parameters are accepted exactly when log2(PQ) is within the bound."""
    p = Parameters.create(N=2**13, levels=2, num_p=2, log_p=39)
    monkeypatch.setitem(params_mod.MAX_LOG_QP_128, 2**13, p.log_qp)
    assert Parameters.create(N=2**13, levels=2, num_p=2, log_p=39).security_bits == 128
    monkeypatch.setitem(params_mod.MAX_LOG_QP_128, 2**13, math.nextafter(p.log_qp, 0.0))
    with pytest.raises(InsecureParametersError, match="exceeds the 128-bit bound"):
        Parameters.create(N=2**13, levels=2, num_p=2, log_p=39)
