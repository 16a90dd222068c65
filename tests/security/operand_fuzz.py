"""Parameters and operands at the CKKS boundary (ours, for docs/robustness.md): operands of other
parameters or of another secret key, scales and constants that leave the modulus, serialized data
the encoder never makes. Each must raise a CKKS error naming it (refimpl.ckks.checks, refimpl.ckks.serialize);
an answer without an error is `silent` (silently wrong), another exception a `traceback`.
The same decisions are tested one by one in tests/ckks/test_boundaries.py."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ckks import serialize as ser
from refimpl.ckks.ciphertext import with_scale
from refimpl.ckks.errors import CKKSError
from refimpl.ring.sampling import RandomSource


def _kit(N: int, levels: int, seed: int):
    p = Parameters.create(N=N, levels=levels, log_q0=50, log_qi=40, log_p=50, num_p=1, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(seed))
    sk = kg.secret_key()
    ev = Evaluator(p, kg.evaluation_keys(sk, rotations=[1]))
    return p, ev, Encoder(p), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(seed + 1)), Decryptor(sk)


def _reseal(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def cases():
    p, ev, enc, E, D = _kit(2048, 4, 1)
    q, evq, encq, Eq, Dq = _kit(1024, 2, 3)
    _, ev2, _, E2, D2 = _kit(2048, 4, 5)  # another secret key of the same parameters
    ct, other = E.encrypt(enc.encode([0.5] * 4)), Eq.encrypt(encq.encode([0.5] * 4))
    low = ev.drop_level(ct, 1)
    data = ser.serialize_ciphertext(ct)
    scale_at = ser.HEAD.size + 3  # blob head, level u16, component count u8, then the scale (float64)
    tiny = bytearray(data)
    struct.pack_into("<d", tiny, scale_at, 5e-324)
    return [
        ("add another parameter set's ciphertext", lambda: ev.add(ct, other)),
        ("rotate another parameter set's ciphertext", lambda: ev.rotate(other, 1)),
        ("multiply another parameter set's ciphertext", lambda: ev.multiply(other, other)),
        ("decrypt N = 2^10 under an N = 2^11 key", lambda: D.decrypt(other)),
        ("decrypt N = 2^11 under an N = 2^10 key", lambda: Dq.decrypt(ct)),
        ("add_plain of another parameter set", lambda: ev.add_plain(ct, encq.encode([1.0]))),
        ("three products without a rescale at level 1", lambda: ev.multiply(ev.multiply(low, low), low)),
        ("mul_const(1e30) at level 1", lambda: ev.mul_const(low, 1e30)),
        ("add_const(1e300)", lambda: ev.add_const(ct, 1e300)),
        ("mul_const(nan)", lambda: ev.mul_const(ct, float("nan"))),
        ("scale 5e-324", lambda: ev.negate(with_scale(ct, 5e-324))),
        ("decrypt at scale 5e-324", lambda: D.decrypt(with_scale(ct, 5e-324))),
        ("deserialize a scale of 5e-324 (CRC fixed)", lambda: ser.deserialize_ciphertext(_reseal(bytes(tiny)), p)),
        ("deserialize under other parameters", lambda: ser.deserialize_ciphertext(data, q)),
        ("deserialize truncated", lambda: ser.deserialize_ciphertext(data[: len(data) // 2], p)),
        ("encode a NaN", lambda: enc.encode(np.array([np.nan]))),
        ("decrypt under another secret key of the same parameters", lambda: D2.decrypt(ct)),
        ("decrypt a deserialized ciphertext under another secret key", lambda: D2.decrypt(ser.deserialize_ciphertext(data, p))),
        ("add ciphertexts of two secret keys", lambda: ev.add(ct, E2.encrypt(enc.encode([0.5])))),
        ("rotate with another secret key's Galois keys", lambda: ev2.rotate(ct, 1)),
    ]


def run_operand_cases() -> list[dict]:
    rows = []
    for name, op in cases():
        try:
            op()
            outcome, msg = "silent", "no error"
        except CKKSError as e:
            outcome, msg = "clean", f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 -- what we classify
            outcome, msg = "traceback", f"{type(e).__name__}: {e}"
        rows.append({"category": "parameters/operands", "name": name, "outcome": outcome, "message": msg})
    return rows
