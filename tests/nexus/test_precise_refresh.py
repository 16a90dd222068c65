"""The precise refresh (META-BTS, Bae et al. CCS 2022) of the encrypted forward: refimpl.nexus.bert.nonlinear's
`refresh(precise=True)` and the placement's count of its two bootstraps (Piece.precise)."""

import numpy as np
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.ckks.bootstrap.placement import Piece, place
from refimpl.nexus.bert.nonlinear import Nonlinear
from refimpl.ring.sampling import RandomSource


@pytest.fixture(scope="module")
def ring():
    p, rc = bootstrap_parameters(1024, levels_after=8, encapsulation_h=32, num_p=3, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    return p, rc, sk, Evaluator(p, kg.evaluation_keys(sk)), Encoder(p), Encryptor(kg.public_key(sk),
                                                                                    RandomSource.insecure_seeded(2))


class NoisyOracle(OracleBootstrapper):
    """An exact refresh plus uniform noise of 2^-bits on every slot (a bootstrap's absolute error on [-1, 1])."""

    def __init__(self, sk, ev, bits, **kw):
        super().__init__(sk, **kw)
        self.ev, self.bits, self.rng = ev, bits, np.random.default_rng(3)

    def bootstrap(self, ct):
        out = super().bootstrap(ct)
        return self.ev.add_const(out, self.rng.uniform(-1, 1, out.params.slots) * 2.0**-self.bits)


class Refresher(Nonlinear):
    def __init__(self, ev, bts):
        self.ev, self.bts = ev, bts


@pytest.mark.parametrize("bits", [19, 16])
def test_precise_refresh_gains_log2_k_bits(ring, bits):
    """NEXUS-LN-PRECISE: values in [0.05, 768] (bound 768: M = 1024) refreshed through a bootstrap with 2^-bits
    absolute error: one bootstrap leaves about 2^-bits M (the loss is real), the precise refresh (two bootstraps)
    at most 2^-bits M / K x 2 with K = min(M, 2^12) = 1024, at the bootstrap's level and scale."""
    p, rc, sk, ev, enc, E = ring
    x = np.geomspace(0.05, 768.0, p.slots)
    ct = E.encrypt(enc.encode(x, level=3))
    dec = lambda c: enc.decode(Decryptor(sk).decrypt(c)).real  # noqa: E731
    errs = {}
    for precise in (False, True):
        bts = NoisyOracle(sk, ev, bits, output_level=p.L - rc.depth, rng=RandomSource.insecure_seeded(4))
        out = Refresher(ev, bts).refresh(ct, 768.0, precise)
        assert bts.calls == 1 + precise and out.level == p.L - rc.depth
        errs[precise] = np.max(np.abs(dec(out) - x))
    assert errs[False] > 0.5 * 2.0**-bits * 1024
    assert errs[True] < 2 * 2.0**-bits and errs[True] < errs[False] / 100, errs


def test_placement_counts_two_bootstraps_per_precise_ciphertext():
    """NEXUS-LN-PRECISE: a precise piece's refresh counts two bootstraps per ciphertext in the plan, and the
    placement weighs it so: two plain refreshes elsewhere beat one precise refresh of two ciphertexts (4), which
    it would choose were b plain (2 bootstraps at one point)."""
    rows = place([Piece("a", 3, 3), Piece("b", 3, 1, precise=True), Piece("c", 3, 1)], 4, 6)
    assert [r["bootstraps"] for r in rows] == [0, 2, 0]  # b refreshed: 2 bootstraps for its one ciphertext
    chain = [Piece("a", 3, 1), Piece("b", 3, 2, precise=True), Piece("c", 3, 1)]
    rows = place(chain, 4, 6)
    assert [r["bootstraps"] for r in rows] == [1, 0, 1]
    plain = place([chain[0], Piece("b", 3, 2), chain[2]], 4, 6)
    assert [r["bootstraps"] for r in plain] == [0, 2, 0]
