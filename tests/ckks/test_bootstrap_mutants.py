"""Tests written for the mutants of `python tests/mutation.py sample ckks-bootstrap` that survived
(docs/testing.md). The expected rows are worked out by hand from the documented rules."""

import inspect
from math import erfc, sqrt

import numpy as np
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ckks.bootstrap import OracleBootstrapper, bootstrapping_context
from refimpl.ckks.bootstrap.bootstrapper import BOOTSTRAP_PRESETS, BootstrapConfig, Bootstrapper, bootstrap_preset
from refimpl.ckks.bootstrap.eval_mod import cosine_coefficients, k_from_hamming_weight
from refimpl.ckks.bootstrap.placement import Block, Piece, greedy, place, simulate
from refimpl.ring.sampling import RandomSource


def row(block, boot, level_in, cost, width, matched):
    return {"block": block, "bootstrap": boot, "level_in": level_in, "cost": cost, "level_out": level_in - cost,
            "ciphertexts": width, "bootstraps": width if boot else 0, "scale_match_level": matched}


CHAIN = [
    Piece("a", cost=2, width=1),
    Piece("b", cost=1, width=2, join=("in", "a", 0)),  # meets a's entry level: the lower level wins
    Piece("c", cost=1, width=1, join=("out", "b", 0)),  # meets b's exit level, equal: one level to match scales
]


def test_simulate_rows_by_hand():
    """CKKS-BOOT-PLACE: the rows of `simulate` on a three-piece chain with an "in" and an "out" join,
    without and with a bootstrap, and where it stops, worked out by hand."""
    assert simulate(CHAIN, set(), 5, 5) == (
        [row("a", False, 5, 2, 1, False), row("b", False, 3, 1, 2, False), row("c", False, 1, 1, 1, True)], None)
    assert simulate(CHAIN, {1}, 5, 5) == (
        [row("a", False, 5, 2, 1, False), row("b", True, 5, 1, 2, False), row("c", False, 3, 1, 1, True)], None)
    assert simulate(CHAIN, set(), 2, 5) == ([row("a", False, 2, 2, 1, False)], 1)


def test_describe_names_the_encapsulation_only_when_used():
    """CKKS-BOOT-ENCAP: the bootstrapper's one-line description names the sparse ephemeral secret's
    weight when the parameters use encapsulation, and says nothing of it otherwise."""
    p, rc = bootstrap_preset("toy-2^10-dense")
    assert rc.encapsulation_h == 32
    assert "; sparse-secret encapsulation h = 32" in Bootstrapper(Evaluator(p), rc).describe()
    p, rc = bootstrap_preset("toy-2^10")  # sparse main secret, no encapsulation
    assert not rc.encapsulation_h
    assert "encapsulation" not in Bootstrapper(Evaluator(p), rc).describe()


def test_place_follows_an_out_join_at_the_exit_level():
    """CKKS-PLAN-1: a join with the exit ("out") level of an earlier piece meets that piece's level
    after its cost. a exits at level 1; refreshing before b (one ciphertext) leaves c at min(2, 1) = 1,
    short of the 2 it needs, so the only plan refreshes c's two ciphertexts (worked out by hand)."""
    chain = [Piece("a", cost=2, width=1), Piece("b", cost=1, width=1),
             Piece("c", cost=1, width=2, need=2, join=("out", "a", 0))]
    assert simulate(chain, {1}, 3, 3)[1] == 2  # the cheaper refresh fails at c
    rows = place(chain, 3, 3)
    assert [r["bootstrap"] for r in rows] == [False, False, True]
    assert [r["level_in"] for r in rows] == [3, 1, 3]


def test_plan_table_columns_and_rows():
    """CKKS-PLAN-1: greedy's plan table has the columns block, boot?, level in, cost, level out, a row
    per piece and the count of bootstraps."""
    lines = greedy([Block("x", 2), Block("y", 2)], 3, 3).table().splitlines()
    assert lines[0].split() == ["block", "boot?", "level", "in", "cost", "level", "out"]
    assert lines[1].split() == ["x", "3", "2", "1"]
    assert lines[2].split() == ["y", "yes", "3", "2", "1"]
    assert lines[3] == "bootstraps: 1 (each returns level 3)"


def test_k_from_hamming_weight_is_the_smallest_k():
    """CKKS-BOOT-EVALMOD: K is the smallest integer with N erfc((K - 1/2) / (sd sqrt 2)) <= 2^log2_failure,
    sd = sqrt((h + 1) / 12): K = 1 when one coefficient of a zero-weight secret is asked for with
    failure 2^-3 (tail 0.083), and K - 1 fails the bound otherwise."""
    assert k_from_hamming_weight(0, 1, -3.0)[0] == 1
    for h, N, f in ((64, 1024, -25.0), (192, 2**16, -25.0), (32, 2**16, -40.0)):
        K, fail = k_from_hamming_weight(h, N, f)
        tail = lambda k: N * erfc((k - 0.5) / (sqrt((h + 1) / 12) * sqrt(2)))  # noqa: E731
        assert fail <= f and tail(K) <= 2.0**f < tail(K - 1)


def test_config_with_a_given_double_angle_chooses_its_degree():
    """CKKS-BOOT-EVALMOD: with r given and no degree, the degree is chosen for that r as the automatic
    choice does (cosine error at most 2^-42 after the level-saving rule)."""
    auto = BootstrapConfig().resolve(1024, 64).eval_mod
    assert BootstrapConfig(double_angle=auto.double_angle).resolve(1024, 64).eval_mod == auto
    for r in (2, 3, 4):
        em = BootstrapConfig(double_angle=r).resolve(1024, 64).eval_mod
        assert em.double_angle == r and em.K == auto.K
        assert cosine_coefficients(em.K, em.degree, r)[1] <= 2.0**-42
        assert cosine_coefficients(em.K, em.degree - 1, r)[1] > 2.0**-45  # one degree less misses the target


def test_bootstrap_parameters_are_named_by_the_ring():
    """CKKS-BOOT: the bootstrapping parameters carry the name boot-2^log2(N)."""
    assert bootstrap_preset("toy-2^10")[0].name == "boot-2^10"
    assert bootstrap_preset("toy-2^10-dense")[0].name == "boot-2^10"


def test_oracle_bootstrapper_counts_every_call():
    """The test stand-in refreshes to its output level at the default scale and counts each call."""
    p = Parameters.create(N=16, levels=3, insecure=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    bs = OracleBootstrapper(sk, output_level=2, rng=RandomSource.insecure_seeded(2))
    ct = Evaluator(p).drop_level(Encryptor(sk, RandomSource.insecure_seeded(3)).encrypt(Encoder(p).encode([0.25, -0.5])), 0)
    for calls in (1, 2):
        out = bs.bootstrap(ct)
        assert bs.calls == calls and (out.level, out.scale) == (2, p.scale)
    assert np.allclose(Encoder(p).decode(Decryptor(sk).decrypt(out))[:2], [0.25, -0.5], atol=1e-6)


def test_bootstrapping_context_default_preset_and_config():
    """CKKS-BOOT: the default preset of bootstrapping_context is a bootstrapping preset on N = 2^10 (a
    level budget of 0, refused by the bootstrapper before any key is made, names its 512 slots), and a
    given configuration reaches the bootstrapper (level budget 2/2 instead of the default 3/3)."""
    assert inspect.signature(bootstrapping_context).parameters["preset"].default in BOOTSTRAP_PRESETS
    with pytest.raises(ValueError, match=r"level budget must be in \[1, 9\] for 512 slots, got 0"):
        bootstrapping_context(config=BootstrapConfig(level_budget=(0, 0)))
    ctx = bootstrapping_context("toy-2^10-dense", insecure_seed=1, config=BootstrapConfig(level_budget=(2, 2)))
    assert ctx.bootstrapper.config.level_budget == (2, 2)
    assert ctx.bootstrapper.output_level == ctx.params.L - ctx.bootstrapper.config.depth
