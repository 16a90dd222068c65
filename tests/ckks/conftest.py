import numpy as np
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ring.sampling import RandomSource


class Kit:
    """One parameter set with keys and helpers, shared by the tests of a module."""

    def __init__(self, params: Parameters, rotations=(), elements=(), seed=1):
        self.p = params
        self.kg = KeyGenerator(params, RandomSource.insecure_seeded(seed))
        self.sk = self.kg.secret_key()
        self.pk = self.kg.public_key(self.sk)
        self.ek = self.kg.evaluation_keys(self.sk, rotations=rotations, conjugate=True, elements=elements)
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
        return self.enc.decode(self.D.decrypt(ct))


@pytest.fixture(scope="session")
def kit():
    """N = 2^12, 60-bit q_0, six 40-bit primes, dnum 3: small and insecure, fast."""
    p = Parameters.create(N=4096, levels=6, log_q0=60, log_qi=40, log_p=60, num_p=2, insecure=True)
    N = p.N
    return Kit(p, rotations=[1, -1, 2, 5, -7, 100, 1000], elements=[N // 2 + 1, N // 4 + 1, 2 * N - 3])
