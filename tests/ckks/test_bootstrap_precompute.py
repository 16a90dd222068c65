"""CKKS-BOOT-PRECOMP: the bootstrapper's diagonals encoded once and kept (ours; OpenFHE's
EvalBootstrapSetup does the same) give the same ciphertexts, bit for bit, as encoding them in
every bootstrap (N = 2^10, insecure toy ring)."""

import numpy as np
import pytest

from refimpl.ckks import Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import BootstrapConfig, Bootstrapper, bootstrap_parameters
from refimpl.ckks.bootstrap.dft import plan
from refimpl.ring.sampling import RandomSource


@pytest.fixture(scope="module")
def ring():
    p, rc = bootstrap_parameters(1024, levels_after=2, h=64, config=BootstrapConfig(level_budget=(2, 2)),
                                 num_p=3, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(31))
    sk = kg.secret_key()
    ev = Evaluator(p, kg.evaluation_keys(sk, elements=Bootstrapper(Evaluator(p), rc).galois_elements()))
    rng = np.random.default_rng(7)
    z = rng.uniform(-1, 1, p.slots) + 1j * rng.uniform(-1, 1, p.slots)
    E, enc = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(32)), Encoder(p)
    return p, rc, ev, E, enc, z


def same(a, b) -> bool:
    return a.level == b.level and a.scale == b.scale and all(np.array_equal(x, y) for x, y in zip(a.c, b.c))


def test_kept_diagonals_give_the_same_ciphertext(ring):
    p, rc, ev, E, enc, z = ring
    ct = ev.drop_level(E.encrypt(enc.encode(z)), 0)
    off = Bootstrapper(ev, rc, cache_diagonals=False)
    on = Bootstrapper(ev, rc)
    nbytes = on.precompute()
    # one matrix per group of each stage, over Q_l P at its level: (l + 1 + |P|) rows of N words
    want = sum(len(plan(d, on.slots).terms) * (level + 1 + len(p.p)) * p.N * 8
               for (_, i, level, _), d in on.planned.items())
    assert nbytes == on.diagonal_bytes == want > 0
    assert len(on.diagonals) == len(on.c2s) + len(on.s2c)
    ref = off.bootstrap(ct)
    assert off.encoded_in_bootstrap == len(off.c2s) + len(off.s2c) and off.diagonal_bytes == 0
    for _ in range(2):
        assert same(on.bootstrap(ct), ref)
    assert on.encoded_in_bootstrap == 0  # the planned scales are the ones the bootstrap uses


def test_other_input_scales_encode_slots_to_coeffs_afresh(ring):
    """SlotsToCoeffs' scales follow the input's: a bootstrap at another scale encodes those
    matrices again without keeping them (memory stays one set), and still matches bit for bit."""
    p, rc, ev, E, enc, z = ring
    ct = E.encrypt(enc.encode(0.5 * z, level=0, scale=p.scale * 1.001))  # as a rescale leaves it, off Delta
    assert ct.scale != p.scale
    on, off = Bootstrapper(ev, rc), Bootstrapper(ev, rc, cache_diagonals=False)
    on.precompute()
    kept = on.diagonal_bytes
    assert same(on.bootstrap(ct), off.bootstrap(ct))
    assert on.encoded_in_bootstrap == len(on.s2c) and on.diagonal_bytes == kept


def test_lazy_cache_fills_on_the_first_bootstrap(ring):
    """Without precompute the first bootstrap encodes and keeps the planned matrices."""
    p, rc, ev, E, enc, z = ring
    ct = ev.drop_level(E.encrypt(enc.encode(z)), 0)
    bs = Bootstrapper(ev, rc)
    assert bs.diagonal_bytes == 0
    first = bs.bootstrap(ct)
    assert bs.encoded_in_bootstrap == len(bs.c2s) + len(bs.s2c) and bs.diagonal_bytes > 0
    assert same(bs.bootstrap(ct), first) and bs.encoded_in_bootstrap == len(bs.c2s) + len(bs.s2c)
