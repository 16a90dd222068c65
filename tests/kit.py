"""One CKKS parameter set with its keys and encode/encrypt helpers, shared by the CKKS and NEXUS tests."""

import numpy as np

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ring.sampling import RandomSource


class Kit:
    """Keys for the rotations and Galois elements asked for (and conjugation if asked), and helpers."""

    def __init__(self, params: Parameters, rotations=(), elements=(), seed=1, conjugate=False):
        self.p = params
        self.kg = KeyGenerator(params, RandomSource.insecure_seeded(seed))
        self.sk = self.kg.secret_key()
        self.pk = self.kg.public_key(self.sk)
        self.ek = self.kg.evaluation_keys(self.sk, rotations=rotations, conjugate=conjugate, elements=elements)
        self.enc = Encoder(params)
        self.E = Encryptor(self.pk, RandomSource.insecure_seeded(seed + 1))
        self.D = Decryptor(self.sk)
        self.ev = Evaluator(params, self.ek)
        self.rng = np.random.default_rng(seed)

    def random_slots(self, complex_=True):
        n = self.p.slots
        z = self.rng.uniform(-1, 1, n)
        return z + 1j * self.rng.uniform(-1, 1, n) if complex_ else z

    def encrypt(self, z, **kw):
        return self.E.encrypt(self.enc.encode(z, **kw))

    def decrypt(self, ct):
        """The slots (complex)."""
        return self.enc.decode(self.D.decrypt(ct))
