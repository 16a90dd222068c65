"""A CKKS context object: parameters, keys, encoder, encryptor, decryptor and evaluator in one (ours).

The facade for the common path, in the style of OpenFHE-python's CryptoContext and TenSEAL's
context: one call makes the keys, values are encrypted at the usable level by default, and
rotations are asked for by step. Everything it holds is the ordinary machinery
(refimpl.ckks.{params, keys, encoder, encryptor, evaluator}, refimpl.ckks.bootstrap), kept
as attributes for whoever wants to go further.

    ctx = Context.create("128-2^13", rotations=[3])
    ct = ctx.encrypt(x)
    out = ctx.rotate(ctx.multiply(ct, ctx.encrypt(y)), 3)
    ctx.decrypt(out)            # ~ np.roll(x * y, -3)

Made by refimpl.ckks.bootstrap.bootstrapping_context(<a name of BOOTSTRAP_PRESETS>), the context
also holds a Bootstrapper with exactly the Galois keys it declares (and the encapsulation keys
when the preset encapsulates its sparse secret); ciphertexts are then encrypted at the
bootstrapper's output level: the primes above it serve bootstrapping itself and do not have
the size of the scale, so arithmetic there drifts the scale (a result off by orders of
magnitude). Encrypting above that level raises.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..progress import Progress, or_silent
from ..ring.sampling import RandomSource
from .ciphertext import Ciphertext
from .encoder import Encoder
from .encryptor import Decryptor, Encryptor
from .errors import ParameterError
from .evaluator import Evaluator
from .keys import KeyGenerator, PublicKey, SecretKey, galois_element
from .params import PRESETS, Parameters, preset


def _step(step) -> int:
    """A rotation step: an integer (1.5 would otherwise turn into 1 without a word)."""
    try:
        return operator.index(step)
    except TypeError:
        raise ParameterError(f"a rotation step must be an integer, got {step!r}") from None


def _numbers(values, what: str) -> np.ndarray:
    """`values` as a numeric array, refused with what was expected when they are not numbers."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biufc":
        raise ParameterError(f"{what} must be numbers (a scalar or a vector of up to N/2 real or complex "
                             f"values), got {type(values).__name__} of dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ParameterError(f"{what} must be a scalar or a vector (the slots are one row), got an array of shape "
                             f"{arr.shape}: flatten it yourself in the order you mean")
    return arr


@dataclass
class Context:
    """Parameters and keys of one client, with the evaluator that uses them (ours)."""

    params: Parameters
    secret_key: SecretKey
    public_key: PublicKey
    encoder: Encoder
    encryptor: Encryptor
    decryptor: Decryptor
    evaluator: Evaluator
    bootstrapper: object | None = None  # a refimpl.ckks.bootstrap Bootstrapper (the core does not import it)

    encapsulation: tuple | None = None  # sparse-secret encapsulation keys (s -> s', s' -> s), when made

    @classmethod
    def create(cls, parameters: str | Parameters = "128-2^13", rotations: Iterable[int] = (), *,
               conjugate: bool = False, insecure_seed: int | None = None, elements: Iterable[int] = (),
               element_levels: dict[int, int] | None = None, encapsulation_h: int | None = None,
               progress: Progress | None = None) -> "Context":
        """Keys for `parameters` (a preset name of refimpl.ckks.params.PRESETS or a Parameters).

        rotations: the steps `rotate` will be asked for (slot j <- slot j + step); only those keys
        are made. insecure_seed: reproducible keys and encryptions, INSECURE (tests only; None,
        the default, draws every secret from the OS). progress: refimpl.progress's callback ("keys" steps, then
        each evaluation key). For a bootstrapper
        (refimpl.ckks.bootstrap.bootstrapping_context fills these): elements, further Galois
        elements; element_levels, the highest level each of them serves; encapsulation_h, the
        weight of the sparse secret of encapsulation keys to make."""
        say = or_silent(progress)
        if not isinstance(parameters, (str, Parameters)):
            raise ParameterError(f"parameters must be a preset name ({', '.join(PRESETS)}) or a Parameters, "
                                 f"got {type(parameters).__name__}")
        params = preset(parameters) if isinstance(parameters, str) else parameters
        if insecure_seed is not None and (isinstance(insecure_seed, bool) or not isinstance(insecure_seed, (int, np.integer))):
            raise ParameterError(f"insecure_seed must be an integer (or None for keys from the OS), got {insecure_seed!r}")
        seeded = insecure_seed is not None
        keys_rng = RandomSource.insecure_seeded(int(insecure_seed)) if seeded else RandomSource()
        enc_rng = RandomSource.insecure_seeded(int(insecure_seed) + 1) if seeded else RandomSource()
        keygen = KeyGenerator(params, keys_rng)
        say("keys: secret and public", 0, 2)
        sk = keygen.secret_key()
        pk = keygen.public_key(sk)
        encapsulation = None
        if encapsulation_h:
            say("keys: encapsulation", 1, 2)
            encapsulation = keygen.encapsulation_keys(sk, keygen.secret_key(hamming_weight=encapsulation_h))
        if isinstance(rotations, (str, bytes)):
            raise ParameterError(f"rotations must be a list of integer steps, got {rotations!r}")
        rotations = sorted({_step(r) for r in rotations})
        elements = sorted({int(k) for k in elements})
        say("keys", 2, 2)
        mine = {galois_element(params, r) for r in rotations if r % params.slots}
        levels = {k: lvl for k, lvl in (element_levels or {}).items() if k not in mine}  # a rotation's key: every level
        eval_keys = keygen.evaluation_keys(sk, rotations=rotations, conjugate=conjugate, elements=elements, levels=levels,
                                           progress=progress)
        ev = Evaluator(params, eval_keys)
        return cls(params, sk, pk, Encoder(params), Encryptor(pk, enc_rng), Decryptor(sk), ev, None, encapsulation)

    # ------------------------------------------------------------------ levels
    @property
    def slots(self) -> int:
        """N/2 complex slots."""
        return self.params.slots

    @property
    def usable_level(self) -> int:
        """The highest level for arithmetic: the top of the chain, or the bootstrapper's output level."""
        return self.params.L if self.bootstrapper is None else self.bootstrapper.output_level

    # ------------------------------------------------------------------ encrypt / decrypt
    def encrypt(self, values, level: int | None = None, scale: float | None = None) -> Ciphertext:
        """Encode up to N/2 values and encrypt under the public key, at `level` (default: the usable level)."""
        level = self.usable_level if level is None else int(level)
        if level > self.usable_level:
            raise ParameterError(
                f"level {level} is above the usable level {self.usable_level}: the primes above it serve "
                "bootstrapping and do not match the scale, so products there would drift the scale; "
                f"encrypt at level <= {self.usable_level} (the default)")
        return self.encryptor.encrypt(self.encoder.encode(_numbers(values, "values"), level=level, scale=scale))

    def decrypt(self, ct: Ciphertext, complex_values: bool = False) -> np.ndarray:
        """Decrypt and decode all N/2 slots (their real parts unless complex_values)."""
        z = self.encoder.decode(self.decryptor.decrypt(ct))
        return z if complex_values else z.real

    # ------------------------------------------------------------------ arithmetic
    def add(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        return self.evaluator.add(a, b)

    def multiply(self, a: Ciphertext, b) -> Ciphertext:
        """a * b, rescaled (one level): b a ciphertext or a constant / slot vector."""
        if isinstance(b, Ciphertext):
            return self.evaluator.mul_rescale(a, b)
        return self.evaluator.rescale(self.evaluator.mul_const(a, _numbers(b, "the constant")))

    def rotate(self, ct: Ciphertext, step: int) -> Ciphertext:
        """Slot j <- slot j + step (needs `step` among the context's rotations)."""
        return self.evaluator.rotate(ct, _step(step))

    def bootstrap(self, ct: Ciphertext) -> Ciphertext:
        """A refreshed ciphertext at the usable level (needs a context from bootstrapping_context)."""
        if self.bootstrapper is None:
            raise ParameterError("this context has no bootstrapper: make it with refimpl.ckks.bootstrap.bootstrapping_context")
        return self.bootstrapper.bootstrap(ct)


__all__ = ["Context"]
