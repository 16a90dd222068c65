"""Tests written for the mutants of `python tests/mutation.py sample ckks-bootstrap` that survived
(docs/testing.md). The expected rows are worked out by hand from the documented rules."""

from refimpl.ckks import Evaluator
from refimpl.ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_preset
from refimpl.ckks.bootstrap.placement import Piece, simulate


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
