"""Small insecure parameter sets and keys for the NEXUS tests (N = 2^10 .. 2^12)."""

import numpy as np
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ring.sampling import RandomSource


class Kit:
    """One parameter set with keys (only the Galois elements asked for) and helpers."""

    def __init__(self, params: Parameters, rotations=(), elements=(), seed=1):
        self.p = params
        self.kg = KeyGenerator(params, RandomSource.insecure_seeded(seed))
        self.sk = self.kg.secret_key()
        self.pk = self.kg.public_key(self.sk)
        self.ek = self.kg.evaluation_keys(self.sk, rotations=rotations, elements=elements)
        self.enc = Encoder(params)
        self.E = Encryptor(self.pk, RandomSource.insecure_seeded(seed + 1))
        self.D = Decryptor(self.sk)
        self.ev = Evaluator(params, self.ek)
        self.rng = np.random.default_rng(seed)

    def encrypt(self, z, **kw):
        return self.E.encrypt(self.enc.encode(z, **kw))

    def decrypt(self, ct):
        """Real parts of the slots."""
        return self.enc.decode(self.D.decrypt(ct)).real


def bits(err) -> float:
    """Precision in bits: -log2 of the max absolute error."""
    return float(-np.log2(np.max(np.abs(err)) + 1e-300))
