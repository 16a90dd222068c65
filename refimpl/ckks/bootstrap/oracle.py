"""A stand-in bootstrapper for tests of higher layers (ours): decrypt, re-encode, re-encrypt.

It holds the secret key, which a real evaluator never does: only tests may use it. It has the
interface of the real Bootstrapper (input/output level and scale, `bootstrap(ct)`) and counts
its calls so that tests can check how many refreshes a circuit needed.
"""

from __future__ import annotations

from ...ring.sampling import RandomSource
from ..ciphertext import Ciphertext
from ..encoder import Encoder
from ..encryptor import Decryptor, Encryptor
from ..keys import SecretKey


class OracleBootstrapper:
    """Refreshes a ciphertext to `output_level` at the default scale by decrypting it (tests only)."""

    def __init__(self, sk: SecretKey, output_level: int | None = None, rng: RandomSource | None = None):
        self.params = sk.params
        self.output_level = self.params.L if output_level is None else output_level
        self.output_scale = self.params.scale
        self.input_level = 0  # any level >= 0 is accepted
        self._enc = Encoder(self.params)
        self._dec = Decryptor(sk)
        self._encr = Encryptor(sk, rng if rng is not None else RandomSource())
        self.calls = 0

    def bootstrap(self, ct: Ciphertext) -> Ciphertext:
        """A fresh encryption of the slots of ct at output_level (ct is not modified)."""
        self.calls += 1
        z = self._enc.decode(self._dec.decrypt(ct))
        return self._encr.encrypt(self._enc.encode(z, level=self.output_level, scale=self.output_scale))
