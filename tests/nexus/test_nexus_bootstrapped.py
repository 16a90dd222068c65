"""NEXUS blocks refreshed by the real bootstrapper (refimpl.ckks.bootstrap.Bootstrapper), not the oracle.

N = 2^10, sparse secret h = 64, 17 levels after bootstrapping (one QuickMax round), insecure
toy ring. The bootstrapper's own error (about 2^-17 here) enters QuickMax through the Sgn
slope: the tolerances are against the exact functions, with the gaps of the inputs well above
the Sgn resolution.
"""

import numpy as np
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import BootstrapConfig, Bootstrapper, bootstrap_parameters
from refimpl.nexus.argmax import argmax
from refimpl.nexus.bert.packing import pack_complex, unpack_complex
from refimpl.nexus.counting import CountingBootstrapper
from refimpl.nexus.softmax import softmax, softmax_plain
from refimpl.ring.sampling import RandomSource


class Boot:
    def __init__(self):
        self.p, rc = bootstrap_parameters(1024, levels_after=17, h=64, config=BootstrapConfig(level_budget=(2, 2)),
                                          num_p=3, insecure=True)
        kg = KeyGenerator(self.p, RandomSource.insecure_seeded(11))
        self.sk = kg.secret_key()
        probe = Bootstrapper(Evaluator(self.p), rc)
        self.ev = Evaluator(self.p, kg.evaluation_keys(self.sk, elements=probe.galois_elements(), rotations=[1, 2, -4]))
        self.bs = Bootstrapper(self.ev, rc)
        self.enc = Encoder(self.p)
        self.E = Encryptor(kg.public_key(self.sk), RandomSource.insecure_seeded(12))
        self.D = Decryptor(self.sk)
        self.rng = np.random.default_rng(0)

    def encrypt(self, x):
        return self.E.encrypt(self.enc.encode(x, level=self.bs.output_level))

    def decrypt(self, ct):
        return self.enc.decode(self.D.decrypt(ct)).real


@pytest.fixture(scope="module")
def B():
    return Boot()


def rows_of_4(B, spread):
    rows = np.stack([B.rng.permutation(np.linspace(-spread, spread, 4)) for _ in range(64)])
    x = np.zeros((64, 8))
    x[:, :4] = rows
    return rows, x


def test_argmax_real_bootstrapping(B):
    """NEXUS-ARGMAX with real bootstraps: 2 rounds, refreshed before round 2 and before the final Sgn."""
    rows, x = rows_of_4(B, 0.45)
    bts = CountingBootstrapper(B.bs)
    out = argmax(B.ev, B.encrypt(x.ravel()), 4, window=8, bootstrapper=bts)
    assert bts.calls == 2
    z = B.decrypt(out).reshape(64, 8)[:, :4]
    assert np.max(np.abs(z - np.eye(4)[rows.argmax(1)])) < 1e-3


def test_softmax_real_bootstrapping(B):
    """NEXUS-SOFTMAX with real bootstraps: refreshed before QuickMax round 2 and before exp."""
    rows, x = rows_of_4(B, 0.5)
    bts = CountingBootstrapper(B.bs)
    out = softmax(B.ev, B.encrypt(x.ravel()), 4, 0.5, window=8, bootstrapper=bts)
    assert bts.calls == 2
    z = B.decrypt(out).reshape(64, 8)[:, :4]
    ex = np.exp(rows - rows.max(1, keepdims=True))
    ex /= ex.sum(1, keepdims=True)
    assert np.max(np.abs(z - softmax_plain(x.ravel(), 4, 0.5, window=8).reshape(64, 8)[:, :4])) < 1e-4
    assert np.max(np.abs(z - ex)) < 2e-3


def test_two_ciphertexts_per_bootstrap(B):
    """NEXUS-BERT-PACKING: a / 2M_a + i b / 2M_b refreshed by one real bootstrap and split by one conjugation
    (refimpl.nexus.bert.packing) gives a and b back within a few times the error of refreshing each alone; at
    level 0 (no level to scale) a + i b with the scale declared doubled."""
    ev = B.ev
    a, b = B.rng.uniform(-3, 3, ev.params.slots), B.rng.uniform(-0.9, 0.9, ev.params.slots)
    ca, cb = B.encrypt(a), B.encrypt(b)
    single = np.max(np.abs(B.decrypt(ev.mul_int(B.bs.bootstrap(ev.rescale(ev.mul_const(ca, 0.25))), 4)) - a))
    z = B.bs.bootstrap(pack_complex(ev, ca, cb, 0.5 / 4, 0.5 / 1))
    ra, rb = unpack_complex(ev, z, 4, 1)
    assert ra.level == rb.level == B.bs.output_level
    err = max(np.max(np.abs(B.decrypt(ra) - a)), np.max(np.abs(B.decrypt(rb) - b)))
    assert err < max(4 * single, 1e-4) and err < 1e-3, (err, single)
    a0, b0 = (ev.drop_level(B.encrypt(v / 2), 0) for v in (a / 3, b))  # |values| <= 1/2, level 0
    z0 = ev.add(a0, ev.mul_monomial(b0, ev.params.N // 2))
    ra, rb = unpack_complex(ev, B.bs.bootstrap(type(z0)(z0.c, 0, 2 * z0.scale, z0.params)), 1, 1)
    assert max(np.max(np.abs(B.decrypt(ra) - a / 6)), np.max(np.abs(B.decrypt(rb) - b / 2))) < 1e-3
