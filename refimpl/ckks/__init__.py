"""RNS-CKKS: parameters, encoding, keys, encryption, evaluation, serialization."""

from .ciphertext import Ciphertext, Plaintext, with_scale
from .encoder import Encoder
from .encryptor import Decryptor, Encryptor
from .errors import (
    CKKSError,
    InsecureParametersError,
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
    "galois_element", "conjugation_element", "CKKSError", "InsecureParametersError",
    "LevelExhaustedError", "LevelMismatchError", "MissingKeyError", "ParameterError", "ParameterMismatchError",
    "ScaleMismatchError", "ScaleRangeError", "SerializationError",
]
