"""Boundary checks (ours): what every evaluator, decryptor and deserializer entry point refuses.

  * an operand of other parameters: its parameter fingerprint (8 bytes of SHA-256 over N, the
    primes and the digits, computed once per parameter set) differs from the evaluator's;
  * a malformed operand: components that are not [level + 1, N] uint64 arrays;
  * a scale that leaves the modulus: a message of magnitude 1 at scale Delta needs
    Delta < Q_l / 2 to decrypt (e.g. two products without a rescale at a low level);
  * a scale below the floor SCALE_FLOOR = 1 (e.g. one rescale too many: Delta / q_l, then below 1),
    or not finite;
  * a constant whose product with the operand leaves the modulus (mul_const(1e30));
  * a ciphertext of another secret key: its key id (refimpl.ckks.keys, "Key ids") differs from the
    decryptor's or the evaluator's key, or from the other operand's.
Each error names the operand and the fix.
"""

from __future__ import annotations

from math import isfinite, log2

import numpy as np

from .errors import KeyMismatchError, ParameterMismatchError, ScaleRangeError
from .params import Parameters

SCALE_FLOOR = 1.0  # below this the message is rounded to less than one unit: it is noise


def log_q_at(params: Parameters, level: int) -> float:
    """log2(Q_level) = log2(q_0 ... q_level)."""
    return params.log_q_prefix[level]


def check_params(params: Parameters, x, op: str, what: str = "operand") -> None:
    """x (a ciphertext, plaintext or key) belongs to `params`, and its arrays have the right shape."""
    xp = getattr(x, "params", None)
    if not isinstance(xp, Parameters):
        raise ParameterMismatchError(
            f"{op}: the {what} is a {type(x).__name__}, expected a refimpl.ckks Ciphertext, Plaintext or key: "
            "encrypt values first (Encryptor.encrypt, Context.encrypt) or encode them (Encoder.encode)")
    if xp is not params and xp.fingerprint() != params.fingerprint():
        raise ParameterMismatchError(
            f"{op}: the {what} belongs to other parameters (N = {xp.N}, {len(xp.q)} + {len(xp.p)} primes, "
            f"fingerprint {xp.fingerprint().hex()}) than this {op.split('.')[0]}'s (N = {params.N}, "
            f"{len(params.q)} + {len(params.p)} primes, fingerprint {params.fingerprint().hex()}): use the "
            "evaluator, encoder and keys made for the operand's parameters, or encrypt it again under these")
    if not (hasattr(x, "c") or hasattr(x, "poly")):
        return  # a key: its shapes were checked when it was built or deserialized
    level = x.level
    if not (isinstance(level, (int, np.integer)) and 0 <= level <= params.L):
        raise ParameterMismatchError(f"{op}: the {what} is at level {level}, outside [0, {params.L}]")
    polys = x.c if hasattr(x, "c") else (x.poly,)
    for k, c in enumerate(polys):
        if not isinstance(c, np.ndarray) or c.shape != (level + 1, params.N) or c.dtype != np.uint64:
            shape = getattr(c, "shape", type(c).__name__)
            raise ParameterMismatchError(
                f"{op}: component {k} of the {what} has shape {shape}, expected ({level + 1}, {params.N}) uint64 "
                "for its level: the object was built by hand or corrupted; encrypt or deserialize it again")


def check_key(expected: bytes | None, operands, op: str, holder: str = "Decryptor") -> bytes | None:
    """The one key id of `expected` (the decryptor's or evaluator's key; None: any) and the
    operands' (plaintexts and untagged ciphertexts: any); refused when two differ."""
    ids = [(f"operand {i}" if len(operands) > 1 else "ciphertext", getattr(x, "key_id", None)) for i, x in enumerate(operands)]
    ids = [(w, k) for w, k in ids if k is not None]
    if expected is not None:
        for what, k in ids:
            if k != expected:
                raise KeyMismatchError(
                    f"{op}: the {what} was encrypted under key {k.hex()}, this {holder}'s key is "
                    f"{expected.hex()}: use the secret key (or the evaluation keys) of the key pair that "
                    "encrypted it; under another key it decrypts to noise")
        return expected
    if len({k for _, k in ids}) > 1:
        raise KeyMismatchError(
            f"{op}: the operands were encrypted under different keys ({', '.join(f'{w}: {k.hex()}' for w, k in ids)}): "
            "homomorphic operations combine ciphertexts of one key pair only")
    return ids[0][1] if ids else None


def check_scale(params: Parameters, scale: float, level: int, op: str, what: str = "operand") -> None:
    """SCALE_FLOOR <= scale < Q_level / 2 (finite)."""
    if not (isinstance(scale, (float, int)) and isfinite(scale)) or scale < SCALE_FLOOR:
        raise ScaleRangeError(
            f"{op}: the {what} has scale {scale!r}, below the floor {SCALE_FLOOR} (no precision left; a scale "
            "is a finite number >= 1, e.g. Parameters.scale): after a computation it was rescaled more often "
            "than multiplied; rescale only after a product")
    room = log_q_at(params, level) - 1.0
    if log2(scale) >= room:
        raise ScaleRangeError(
            f"{op}: the {what} has scale 2^{log2(scale):.1f} at level {level}, where the modulus leaves "
            f"2^{room:.1f} for a message of magnitude 1: rescale after every product (Evaluator.rescale) "
            "before multiplying again, or start from a higher level")


def check_operand(params: Parameters, x, op: str, what: str = "operand") -> None:
    """Parameters, shape and scale of a ciphertext or plaintext."""
    check_params(params, x, op, what)
    check_scale(params, x.scale, x.level, op, what)


def check_product_scale(params: Parameters, scale: float, level: int, op: str) -> None:
    """The scale a product would have: refused if the result leaves the modulus."""
    room = log_q_at(params, level) - 1.0
    if not isfinite(scale) or log2(scale) >= room:
        raise ScaleRangeError(
            f"{op}: the product's scale 2^{log2(scale) if isfinite(scale) and scale > 0 else float('inf'):.1f} "
            f"at level {level} leaves the modulus (room 2^{room:.1f} for a message of magnitude 1): rescale "
            "the operands first (two products without a rescale), or use a smaller constant scale")


def check_constant(params: Parameters, value, op_scale: float, level: int, op: str) -> None:
    """|value| times the scale it ends up at must fit the modulus (a message of magnitude 1)."""
    mag = float(np.max(np.abs(np.asarray(value, dtype=np.complex128)), initial=0.0))
    if not isfinite(mag):
        raise ScaleRangeError(f"{op}: the constant is not finite ({value!r}): pass a finite number")
    if mag == 0.0:
        return
    room = log_q_at(params, level) - 1.0
    if log2(mag) + log2(op_scale) >= room:
        raise ScaleRangeError(
            f"{op}: the constant {mag:.3g} at scale 2^{log2(op_scale):.1f} needs 2^{log2(mag) + log2(op_scale):.1f}, "
            f"beyond the modulus at level {level} (room 2^{room:.1f}): split it into smaller factors with a "
            "rescale in between, or scale the message down first")
