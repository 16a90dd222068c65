"""CKKS-PLAN-1: bootstrapping placement is feasible and minimal (checked by exhaustive search)."""

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import LevelExhaustedError
from refimpl.ckks.bootstrap.planner import Block, place_bootstraps
from refimpl.constants import C


def brute_force_min(costs, start, top):
    """Fewest bootstraps over all subsets of positions (exact oracle for short chains)."""
    n = len(costs)
    for k in range(n + 1):
        for where in itertools.combinations(range(n), k):
            level, ok = start, True
            for i, c in enumerate(costs):
                if i in where:
                    level = top
                if level < c:
                    ok = False
                    break
                level -= c
            if ok:
                return k
    return None


@given(costs=st.lists(st.integers(0, 9), min_size=1, max_size=8), start=st.integers(0, 12), top=st.integers(9, 14))
@settings(max_examples=60)
def test_greedy_is_feasible_and_minimal(costs, start, top):
    plan = place_bootstraps([Block(f"b{i}", c) for i, c in enumerate(costs)], start, top)
    assert all(s.level_out >= 0 for s in plan.steps)
    assert plan.bootstraps == brute_force_min(costs, start, top)


def test_nexus_layer_with_official_costs():
    """The official NEXUS costs: a QuickMax over 128 keys is 7 rounds of 17 levels; with 19
    levels after bootstrapping each round needs its own refresh."""
    L = C["nexus"]["levels"]
    blocks = [
        Block("qkv matmul", 1), Block("softmax quickmax", 7 * L["quickmax_round"], parts=(L["quickmax_round"],) * 7),
        Block("softmax exp+inverse", L["softmax"]), Block("attention matmul", 1), Block("layernorm", L["layernorm"]),
        Block("ffn matmul", 1), Block("gelu", L["gelu"]), Block("ffn matmul 2", 1), Block("layernorm 2", L["layernorm"]),
    ]
    plan = place_bootstraps(blocks, start_level=19, bootstrap_level=19)
    assert all(s.level_out >= 0 for s in plan.steps)
    assert plan.bootstraps == brute_force_min([c for b in blocks for _, c in b.pieces()], 19, 19)
    assert "quickmax[6]" in plan.table()
    with pytest.raises(LevelExhaustedError, match="needs 119 levels"):
        place_bootstraps([Block("quickmax", 119)], 19, 19)
