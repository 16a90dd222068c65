"""Exceptions of the CKKS layer (ours): each says what was expected, what was found, and how to fix it."""


class CKKSError(ValueError):
    """Base class of every CKKS error."""


class ParameterError(CKKSError):
    """Invalid parameters (N, primes, scale, dnum)."""


class InsecureParametersError(ParameterError):
    """log2(PQ) above the 128-bit bound for N, and `insecure=True` was not given."""


class ParameterMismatchError(CKKSError):
    """An operand of another parameter set (or with arrays of the wrong shape for its level)."""


class KeyMismatchError(CKKSError):
    """A ciphertext of another secret key (its key id differs from the key's or the other operand's)."""


class ScaleRangeError(CKKSError):
    """A scale (or a constant) that leaves the modulus or falls below the floor."""


class LevelMismatchError(CKKSError):
    """Two operands at different levels."""


class ScaleMismatchError(CKKSError):
    """Two operands with different scales where equal scales are needed."""


class LevelExhaustedError(CKKSError):
    """The operation needs more levels than the ciphertext has left."""


class MissingKeyError(CKKSError, KeyError):
    """An evaluation key (relinearization or Galois) was not generated."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SerializationError(CKKSError):
    """Malformed, truncated, corrupted or mismatched serialized data."""


class KeyLevelError(MissingKeyError):
    """A switching key generated for lower levels than the ciphertext it should switch."""
