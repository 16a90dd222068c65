"""The counting evaluators count Evaluator.mul_plain_sum (ours; spec: CKKS-MAC) as the chain of mul_plain and
add it replaces, so the count tables do not move; the DryEvaluator tallies its terms as "mac" operations."""

from collections import Counter

import numpy as np
import pytest

from refimpl.ckks import Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ckks.errors import LevelMismatchError, ScaleMismatchError
from refimpl.experiments.bertbase import cost
from refimpl.nexus.counting import OPS, CountingEvaluator, DryEvaluator
from refimpl.ring.sampling import RandomSource


def test_fused_sum_counts_as_the_chain():
    p = Parameters.create(N=256, levels=3, log_q0=50, log_qi=30, log_p=50, num_p=1, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    enc, E = Encoder(p), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(2))
    level, K = 2, 5
    cts = [E.encrypt(enc.encode(np.full(4, 0.1 * k), level=level)) for k in range(K)]
    pts = [enc.encode(np.full(4, 0.5), level=level, scale=float(p.q[level])) for _ in range(K)]
    chain, fused = CountingEvaluator(Evaluator(p)), CountingEvaluator(Evaluator(p))
    acc = None
    for a, pt in zip(cts, pts):
        t = chain.mul_plain(a, pt)
        acc = t if acc is None else chain.add(acc, t)
    out = fused.mul_plain_sum(iter(cts), pts)
    assert all(np.array_equal(x, y) for x, y in zip(out.c, acc.c))
    assert fused.counts == chain.counts + Counter({"mul_plain_sum": 1})
    assert fused.counts["pt_mults"] == K and fused.counts["add"] == K - 1

    dry = DryEvaluator(p)
    d = dry.mul_plain_sum([dry.fresh(level)] * K, pts)
    assert (d.level, d.scale) == (out.level, out.scale)
    assert dry.counts == fused.counts and dry.ops == Counter({f"mac@{level}": K})
    with pytest.raises(LevelMismatchError):
        dry.mul_plain_sum([dry.fresh(level), dry.fresh(level - 1)], pts[:2])
    with pytest.raises(ScaleMismatchError):
        dry.mul_plain_sum([dry.fresh(level), dry.fresh(level, 2.0**20)], pts[:2])
    with pytest.raises(ValueError, match="no terms"):
        dry.mul_plain_sum([], [])


def test_units_without_mac_price_a_term_as_the_chain():
    """Units measured before the fused sum existed price a mac term as a pt_mult plus an add; with a measured
    mac unit, predict uses it."""
    units = {"levels": [1, 3], "pt_mult": [1.0, 3.0], "add": [0.1, 0.3]}
    assert cost.unit(units, "mac", 2) == pytest.approx(2.0 + 0.2)
    full = {**units, **{op: [0.0, 0.0] for op in OPS if op not in units}}
    assert cost.predict({"mac@3": 10}, full)["mac"] == 0.0
    del full["mac"]
    assert cost.predict({"mac@3": 10}, full)["mac"] == pytest.approx(33.0)
