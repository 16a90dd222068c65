"""The time model from counts (refimpl.experiments.bertbase.cost): the DryEvaluator's operations by level agree
with its counts, the prediction is the sum it claims (an independent hand computation), units are measured
for every operation, and the store correction replaces encodings by expansions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.experiments.bertbase import cost
from refimpl.experiments.bertbase import counts as bc
from refimpl.ckks import KeyGenerator
from refimpl.ckks.keys import conjugation_element, galois_element
from refimpl.nexus.counting import OPS, DryEvaluator, key_bytes
from refimpl.ring.sampling import RandomSource

from .test_bertbase_counts import small_model


@pytest.fixture(scope="module")
def ring():
    return bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)


def total(ops: dict, op: str) -> int:
    return sum(v for k, v in ops.items() if k.split("@")[0] == op)


@pytest.mark.parametrize("attention,activation", [("softmax", "gelu"), ("2quad-freediv", "quad")])
def test_ops_by_level_agree_with_the_counts(ring, attention, activation):
    """NEXUS-BERT-COST: the per-level tally of a dry forward sums to the forward's own counts: rotations with their
    own key switch + hoisted rotations + relinearizations = key switches; products, rescales and encodings alike;
    the per-layer snapshots add up to the whole run; the stand-in store sees every weight diagonal."""
    p, rc = ring
    _, _, model = small_model(attention, activation)
    res = bc.count(model, 12, p, p.L - rc.depth)
    ops = Counter()
    for d in (*res["ops_per_layer"], res["ops_head"]):
        ops.update(d)
    t = res["total"]
    assert total(ops, "rotate") + total(ops, "hoisted") + total(ops, "relin") == t["key_switches"] > 0
    assert total(ops, "pt_mult") + total(ops, "mac") == t["pt_mults"] and total(ops, "rescale") == t["rescales"]
    assert total(ops, "mac") > 0  # the linear layers' inner sums, fused
    assert total(ops, "encode") == t["encodes"] and total(ops, "tensor") == t["ct_mults"]
    assert 0 < total(ops, "modup") <= total(ops, "hoisted")
    hits = sum(total(d, "expand") for d in res["store_per_layer"]) + total(res["store_head"], "expand")
    assert 0 < hits < t["encodes"]  # weight diagonals come from the store; masks and constants are still encoded
    assert {k.split("@")[0] for k in ops} <= set(OPS)


def test_dry_ops_follow_levels():
    """Each operation is tallied at the level it runs at (a rescale at l, the next product at l - 1)."""
    p, _ = bootstrap_parameters(1024, levels_after=5, encapsulation_h=32, num_p=2, insecure=True)
    ev = DryEvaluator(p)
    a = ev.fresh(5)
    b = ev.rescale(ev.multiply(a, a))
    ev.rotate_hoisted(b, [0, 1, 2, 3])
    ev.mul_const(b, np.ones(4))
    assert dict(ev.ops) == {"tensor@5": 1, "relin@5": 1, "rescale@5": 1, "modup@4": 1, "hoisted@4": 3,
                            "pt_mult@4": 1, "encode@4": 1}


def test_predict_is_the_weighted_sum():
    """predict = sum of count x unit (linear between measured levels) + bootstraps x seconds; with a store, each
    hit's encoding is replaced by an expansion. Checked against a hand computation."""
    units = {"levels": [1, 5], **{op: [0.0, 0.0] for op in OPS}, "expand": [0.0, 0.0]}
    units["rotate"] = [1.0, 5.0]
    units["encode"] = [0.2, 1.0]
    units["expand"] = [0.02, 0.1]
    ops = {"rotate@3": 2, "rotate@5": 1, "encode@1": 10, "rotate@9": 1}
    got = cost.predict(ops, units, bootstraps=2, bootstrap_s=7.0)
    assert got["rotate"] == pytest.approx(2 * 3.0 + 5.0 + 5.0)  # level 3 halfway; level 9 beyond: flat
    assert got["encode"] == pytest.approx(2.0)
    assert got["total"] == pytest.approx(16.0 + 2.0 + 14.0)
    with_store = cost.predict(ops, units, 2, 7.0, store_hits={"expand@1": 4})
    assert with_store["encode"] == pytest.approx(2.0 - 4 * (0.2 - 0.02))


def test_measure_units_small_ring():
    """Every operation gets a non-negative time at every requested level (timing itself is not asserted)."""
    p, _ = bootstrap_parameters(1024, levels_after=3, encapsulation_h=32, num_p=2, insecure=True)
    u = cost.measure_units(p, [1, 3], reps=1, period=64)
    assert u["levels"] == [1, 3] and u["expand_stride"] == p.N // 128
    for op in (*OPS, "expand"):
        assert len(u[op]) == 2 and min(u[op]) >= 0.0, op


def test_measure_units_by_threads_small_ring():
    """threads=(1, 2): every operation at every level for both counts, wall and CPU; the top-level units are the
    last count's wall seconds (timing itself is not asserted)."""
    p, _ = bootstrap_parameters(1024, levels_after=3, encapsulation_h=32, num_p=2, insecure=True)
    u = cost.measure_units(p, [1, 3], reps=1, period=64, threads=(1, 2))
    assert set(u["by_threads"]) == {"1", "2"}
    for t in ("1", "2"):
        for clock in ("wall", "cpu"):
            v = u["by_threads"][t][clock]
            assert v["levels"] == [1, 3]
            for op in (*OPS, "expand"):
                assert len(v[op]) == 2 and min(v[op]) >= 0.0, (t, clock, op)
    for op in (*OPS, "expand"):
        assert u[op] == u["by_threads"]["2"]["wall"][op]


def test_derive_by_threads(tmp_path):
    """A units file with units_by_threads derives each count from its own units and bootstrap: with units of
    count 2 exactly half those of count 1 and half the bootstrap, every figure halves."""
    import json

    from refimpl.experiments.bertbase.run import derive_from_counts

    one = {"levels": [1, 5], **{op: [1.0, 2.0] for op in OPS}, "expand": [0.1, 0.2]}
    two = {k: (v if k == "levels" else [x / 2 for x in v]) for k, v in one.items()}
    f = tmp_path / "u.json"
    f.write_text(json.dumps({"units": two, "threads": 2, "bootstrap_s": 5.0,
                             "units_by_threads": {"1": one, "2": two},
                             "bootstrap_s_by_threads": {"1": 10.0, "2": 5.0}}))
    counts = {"ops_per_layer": [{"rotate@3": 4, "encode@1": 2}], "store_per_layer": [{"expand@1": 1}],
              "per_layer": [{"layer": {"bootstraps": 2}}], "ops_head": {"add@5": 3}, "store_head": {},
              "head": {"bootstraps": 0}}
    d = derive_from_counts(counts, str(f), None)
    by = d["by_threads"]
    assert by["1"]["model_s"] == pytest.approx(4 * 1.5 + 2 * 1.0 + 2 * 10.0 + 3 * 2.0)
    assert by["2"]["model_s"] == pytest.approx(by["1"]["model_s"] / 2)
    assert by["1"]["model_store_s"] == pytest.approx(34.0 - (1.0 - 0.1))  # one encoding at level 1 expanded instead
    assert by["2"]["model_store_s"] == pytest.approx(by["1"]["model_store_s"] / 2, abs=0.06)  # rounded to 0.1 s
    assert d["model_s"] == pytest.approx(by["2"]["model_s"])
    assert "1 cpu" not in by  # no CPU units in the file


def test_galois_keys_used_and_their_bytes():
    """The dry run records each Galois element at the highest level it is used at; key_bytes equals the bytes
    of real keys made at those levels (b only, and with a expanded)."""
    p, _ = bootstrap_parameters(1024, levels_after=5, encapsulation_h=32, num_p=2, insecure=True)
    ev = DryEvaluator(p)
    a = ev.fresh(5)
    ev.rotate(a, 1)
    b = ev.rescale(ev.mul_const(a, 0.5))
    ev.rotate_hoisted(b, [0, 1, 2])
    ev.conjugate(b)
    k1, k2, kc = galois_element(p, 1), galois_element(p, 2), conjugation_element(p)
    assert ev.galois == {k1: 5, k2: 4, kc: 4}
    for expand in (False, True):
        kg = KeyGenerator(p, RandomSource.insecure_seeded(1), expand_keys=expand)
        keys = kg.evaluation_keys(kg.secret_key(), elements=[k1, k2, kc], relin=False, levels=ev.galois)
        assert key_bytes(p, ev.galois, with_a=expand) == sum(k.nbytes for k in keys.galois.values())
