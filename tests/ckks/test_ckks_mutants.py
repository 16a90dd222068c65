"""Tests written for the mutants of `python tests/mutation.py sample ckks` that survived (docs/testing.md).
Expected values are computed independently (Python integer arithmetic, the documented messages)."""

import math
import struct
import zlib

import numpy as np
import numpy.polynomial.chebyshev as npcheb
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters, SerializationError
from refimpl.ckks.errors import (LevelExhaustedError, MissingKeyError, ParameterError, ParameterMismatchError,
                                 ScaleRangeError)
from refimpl.ckks.keys import SwitchingKey
from refimpl.ckks.params import preset
from refimpl.ckks.polyeval import chebyshev_interpolate, evaluate_chebyshev, evaluate_power, poly_depth
from refimpl.ckks.serialize import (HEAD, deserialize_ciphertext, deserialize_evaluation_keys, deserialize_public_key,
                                    serialize_ciphertext, serialize_evaluation_keys, serialize_public_key)
from refimpl.ring.sampling import RandomSource


@pytest.mark.parametrize("levels, log_q0, log_qi, log_p", [(6, 60, 40, 60), (4, 50, 30, 45), (0, 40, 40, 40)])
def test_create_with_dnum_splits_the_chain_into_equal_consecutive_digits(levels, log_q0, log_qi, log_p):
    """CKKS-PARAMS: with dnum given, the primes q_0..q_L fall into consecutive digits of ceil((L+1)/dnum)
    primes (the last one shorter), and num_p=None takes the fewest special primes whose nominal bits
    cover the widest digit's."""
    n = levels + 1
    nominal = [log_q0] + [log_qi] * levels
    for dnum in range(1, n + 1):
        p = Parameters.create(N=16, levels=levels, log_q0=log_q0, log_qi=log_qi, log_p=log_p, dnum=dnum, insecure=True)
        size = math.ceil(n / dnum)
        want = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
        assert [list(d) for d in p.digits] == want
        widest = max(sum(nominal[i] for i in d) for d in want)
        assert len(p.p) == max(1, math.ceil(widest / log_p))


def test_switching_key_level_out_of_range_is_refused_with_the_range():
    """CKKS-CHECK-PARAMS: a switching key for a level outside [0, L] is refused, naming the range and the level."""
    p = Parameters.create(N=16, levels=3, insecure=True)
    for level in (-1, p.L + 1):
        with pytest.raises(ParameterError, match=rf"level must be in \[0, {p.L}\], got {level}"):
            SwitchingKey(b=(), a_seeds=(), params=p, level=level)


def test_binary_operations_name_the_operand_of_other_parameters():
    """CKKS-CHECK-PARAMS: add and multiply with one operand of another parameter set name which side it is."""
    def kit(N, seed):
        p = Parameters.create(N=N, levels=2, insecure=True)
        kg = KeyGenerator(p, RandomSource.insecure_seeded(seed))
        enc = Encryptor(kg.public_key(kg.secret_key()), RandomSource.insecure_seeded(seed + 1))
        return p, enc.encrypt(Encoder(p).encode(np.full(p.slots, 0.5)))

    p, mine = kit(32, 1)
    _, theirs = kit(16, 3)
    ev = Evaluator(p)
    for op in (ev.add, ev.multiply):
        with pytest.raises(ParameterMismatchError, match="right operand"):
            op(mine, theirs)
        with pytest.raises(ParameterMismatchError, match="left operand"):
            op(theirs, mine)


def small_kit(N=32, levels=2, seed=1, **keys):
    p = Parameters.create(N=N, levels=levels, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(seed))
    sk = kg.secret_key()
    enc = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(seed + 1))
    ek = kg.evaluation_keys(sk, **keys) if keys else None
    return p, kg, sk, enc, Encoder(p), (Evaluator(p, ek) if ek else Evaluator(p))


def test_smallest_ring_and_preset_names():
    """CKKS-PARAMS: N = 4 is the smallest ring accepted (N = 2 and non-powers of two are not); a preset
    carries its own name."""
    assert Parameters.create(N=4, levels=1, insecure=True).N == 4
    for N in (2, 12):
        with pytest.raises(ParameterError, match=f"N must be a power of two >= 4, got {N}"):
            Parameters.create(N=N, levels=1, insecure=True)
    assert preset("toy-1024").name == "toy-1024"


def test_errors_name_the_operation():
    """CKKS-CHECK-*: the evaluator's and encoder's errors start with the operation that refused (add,
    conjugate, Encoder.decode) and name what was wrong (the requested scale)."""
    p, _, _, enc, encoder, ev = small_kit()
    _, _, _, enc2, encoder2, _ = small_kit(N=16, seed=3)
    ct = enc.encrypt(encoder.encode(np.full(p.slots, 0.5)))
    other = enc2.encrypt(encoder2.encode([0.5]))
    with pytest.raises(ParameterMismatchError, match="^add: "):
        ev.add(ct, other)
    with pytest.raises(MissingKeyError, match="^conjugate needs the Galois key"):
        ev.conjugate(ct)
    with pytest.raises(ParameterMismatchError, match="^Encoder.decode: "):
        encoder.decode(encoder2.encode([0.5]))
    with pytest.raises(ScaleRangeError, match="^Encoder.encode: the requested scale has scale 2"):
        encoder.encode([0.5], scale=2.0**400)


def test_missing_key_message_elides_beyond_twelve_elements():
    """CKKS-CHECK-KEYS: the missing-key error lists the generated Galois elements, the first 12 and '...'
    when there are more (13 here), all of them when there are 12."""
    for count, elided in ((13, True), (12, False)):
        elements = list(range(3, 3 + 2 * count, 2))  # odd elements of (1, 2N), N = 32
        _, _, _, enc, encoder, ev = small_kit(elements=elements, relin=False)
        ct = enc.encrypt(encoder.encode([0.5]))
        with pytest.raises(MissingKeyError) as err:
            ev.apply_galois(ct, 63, "probe")
        assert (f"{elements[:12]}..." in str(err.value)) == elided
        assert f"{elements[:12]}. Add it" in str(err.value) or elided


def test_add_const_vector_at_a_scale_of_its_own():
    """CKKS-EVAL: a vector constant added to a ciphertext whose scale is not the default one is encoded
    at the ciphertext's scale: the sum decrypts to z + v."""
    p, kg, sk, enc, encoder, ev = small_kit()
    z = np.linspace(-0.5, 0.5, p.slots)
    v = np.linspace(0.25, -0.25, p.slots)
    ct = enc.encrypt(encoder.encode(z, scale=2.0**30))
    out = ev.add_const(ct, v)
    assert out.scale == ct.scale
    assert np.max(np.abs(encoder.decode(Decryptor(sk).decrypt(out)).real - (z + v))) < 1e-6


def test_galois_keys_progress_is_reported_under_its_name():
    """Progress of key generation: each Galois key is reported as "evaluation keys: Galois"."""
    p = Parameters.create(N=32, levels=2, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    seen = []
    kg.evaluation_keys(kg.secret_key(), elements=[3, 5], relin=False, progress=lambda msg, done, total: seen.append(msg))
    assert seen.count("evaluation keys: Galois") == 3 and seen[-1] == "evaluation keys"


def test_deserializer_refuses_an_even_galois_element():
    """CKKS-CHECK-SERIAL: a Galois element must be odd: an even one inside (1, 2N) is refused."""
    p = Parameters.create(N=32, levels=2, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    data = serialize_evaluation_keys(kg.evaluation_keys(kg.secret_key(), elements=[5], relin=False), p)
    head = struct.pack("<BII", 0, 1, 5)  # the body: no relinearization key, one Galois key, element 5
    at = data.find(head)
    assert at > 0 and data.find(head, at + 1) == -1
    bad = data[:at + 5] + struct.pack("<I", 6) + data[at + 9:-4]
    with pytest.raises(SerializationError, match="invalid Galois element 6"):
        deserialize_evaluation_keys(bad + struct.pack("<I", zlib.crc32(bad)), p)


def test_chebyshev_interpolate_has_degree_plus_one_coefficients():
    """CKKS-POLY: the interpolant at the degree + 1 Chebyshev nodes of [a, b] is numpy's chebinterpolate
    of f on [a, b] mapped to [-1, 1]."""
    f = np.exp
    for a, b, degree in ((-1.0, 1.0, 7), (0.0, 4.0, 10)):
        coeffs, err = chebyshev_interpolate(f, a, b, degree)
        want = npcheb.chebinterpolate(lambda y: f((y * (b - a) + a + b) / 2), degree)
        assert len(coeffs) == degree + 1
        assert np.allclose(coeffs, want, rtol=0, atol=1e-12)
        grid = np.linspace(a, b, 1001)
        assert err == pytest.approx(np.max(np.abs(npcheb.chebval((2 * grid - a - b) / (b - a), want) - f(grid))), rel=0.1)


def test_evaluate_power_on_a_domain_other_than_the_unit_interval(kit):
    """CKKS-POLY: sum c_k x^k on x in [0, 4] (the Chebyshev basis of [0, 4]) against numpy's polyval."""
    c = [0.5, -0.25, 0.125, -0.03125]
    x = np.linspace(0.0, 4.0, kit.p.slots)
    out, _ = evaluate_power(kit.ev, kit.encrypt(x), c, 0.0, 4.0)
    assert np.max(np.abs(kit.decrypt(out).real - np.polynomial.polynomial.polyval(x, c))) < 1e-5


def test_polynomial_with_constant_quotient_at_exactly_its_depth(kit):
    """CKKS-POLY: c_0 + c_4 T_4 splits into the constant quotient c_4 times T_4 plus the constant c_0
    (leaves without T_j terms); at level poly_depth(4) = 3 it is evaluated down to level 0, one level
    fewer is refused. A constant leaf is put on a zero multiple of T_1: the input's scale 2^50 (above
    the 40-bit primes) makes any T_1 left in it show at full size (S^4 / q^5 = 1 times x; 2^-40 at S = 2^40)."""
    c = [0.1, 0.0, 0.0, 0.0, 0.5]
    x = np.linspace(-1.0, 1.0, kit.p.slots)
    ct = kit.ev.drop_level(kit.encrypt(x, scale=2.0**50), poly_depth(4))
    out, stats = evaluate_chebyshev(kit.ev, ct, c)
    assert out.level == 0 and stats.depth == 3 and out.scale == 2.0**50
    assert np.max(np.abs(kit.decrypt(out).real - npcheb.chebval(x, c))) < 1e-5
    with pytest.raises(LevelExhaustedError, match="needs 3 levels but the ciphertext is at level 2"):
        evaluate_chebyshev(kit.ev, kit.ev.drop_level(ct, 2), c)


def test_switching_key_level_defaults_to_the_top():
    """CKKS-KEYS: a switching key built without a level serves every level up to L."""
    p = Parameters.create(N=16, levels=3, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    key = kg.galois_key(kg.secret_key(), 3)
    assert SwitchingKey(b=key.b, a_seeds=key.a_seeds, params=p).level == p.L


def test_public_key_must_be_stored_at_scale_one():
    """CKKS-CHECK-SERIAL: a serialized public key whose scale field is not 1 is refused (a ciphertext's
    scale such as 2^20 would pass the ciphertext checks)."""
    p = Parameters.create(N=16, levels=2, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    data = serialize_public_key(kg.public_key(kg.secret_key()))
    at = HEAD.size + 3  # the body: level (u16), component count (u8), scale (f64)
    assert struct.unpack_from("<d", data, at) == (1.0,)
    bad = data[:at] + struct.pack("<d", 2.0**20) + data[at + 8:-4]
    with pytest.raises(SerializationError, match="a key is stored at scale 1"):
        deserialize_public_key(bad + struct.pack("<I", zlib.crc32(bad)), p)


def test_truncated_body_is_reported_under_its_kind():
    """CKKS-CHECK-SERIAL: a body shorter than its header announces (with a valid checksum) is refused
    with an error that starts with the kind of object."""
    p, _, _, enc, encoder, _ = small_kit(N=16)
    data = serialize_ciphertext(enc.encrypt(encoder.encode([0.5])))
    cut = data[:-4 - 8]
    with pytest.raises(SerializationError, match="^ciphertext: truncated data"):
        deserialize_ciphertext(cut + struct.pack("<I", zlib.crc32(cut)), p)


def test_sub_plain_and_ciphertext_repr():
    """CKKS-EVAL: a ciphertext minus a plaintext decrypts to the difference; a ciphertext's repr shows
    its level of L, scale, size and ring."""
    p, kg, sk, enc, encoder, ev = small_kit()
    z, v = np.linspace(-0.5, 0.5, p.slots), np.linspace(0.25, -0.25, p.slots)
    ct = enc.encrypt(encoder.encode(z))
    out = ev.sub_plain(ct, encoder.encode(v))
    assert np.max(np.abs(encoder.decode(Decryptor(sk).decrypt(out)).real - (z - v))) < 1e-6
    assert repr(ct) == f"Ciphertext(level=2/2, scale=2^{np.log2(p.scale):.2f}, size=2, N=32)"
