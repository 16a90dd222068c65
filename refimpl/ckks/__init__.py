"""RNS-CKKS: parameters, encoding, keys, encryption, evaluation, serialization.

    params      the ring degree, the RNS chain, special primes, digits, presets, the security check
    encoder     the canonical embedding (slots) and coefficient encoding
    ciphertext  Plaintext and Ciphertext: NTT-domain residues with their level and exact scale
    keys        secret, public and hybrid key-switching keys; keyswitch applies them (Han and Ki 2020)
    encryptor   encryption under the public or secret key, decryption
    evaluator   the homomorphic operations, with levels and scales checked
    polyeval    Chebyshev polynomial evaluation at optimal depth
    serialize   bytes of plaintexts, ciphertexts and keys
    checks, errors, precision   ours: boundary checks, the exceptions, precision in bits
    context     ours: the facade, parameters and keys in one object
    bootstrap/  bootstrapping (its own package; this core never imports it)

To use it, start with context (`Context.create`); to read it, params -> encoder -> keys ->
encryptor -> evaluator.
"""

from .ciphertext import Ciphertext, Plaintext, with_scale
from .encoder import Encoder
from .encryptor import Decryptor, Encryptor
from .errors import (
    CKKSError,
    InsecureParametersError,
    KeyMismatchError,
    LevelExhaustedError,
    LevelMismatchError,
    MissingKeyError,
    ParameterError,
    ParameterMismatchError,
    ScaleMismatchError,
    ScaleRangeError,
    SerializationError,
)
from .evaluator import Evaluator
from .keys import EvaluationKeys, KeyGenerator, PublicKey, SecretKey, SwitchingKey, conjugation_element, galois_element
from .params import PRESETS, Parameters, preset
from .context import Context  # noqa: E402 - the facade, after what it is built from

__all__ = [
    "Context", "Ciphertext", "Plaintext", "with_scale", "Encoder", "Encryptor", "Decryptor", "Evaluator", "EvaluationKeys",
    "KeyGenerator", "PublicKey", "SecretKey", "SwitchingKey", "Parameters", "PRESETS", "preset",
    "galois_element", "conjugation_element", "CKKSError", "InsecureParametersError", "KeyMismatchError",
    "LevelExhaustedError", "LevelMismatchError", "MissingKeyError", "ParameterError", "ParameterMismatchError",
    "ScaleMismatchError", "ScaleRangeError", "SerializationError",
]
