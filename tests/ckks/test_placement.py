"""Bootstrap placement (refimpl.ckks.bootstrap.placement): `greedy` and the dynamic program `place`
are feasible and minimal, checked against brute force over every set of positions (the oracles
below: `brute_force_min` for greedy's chains, `simulate` over all subsets for `place`)."""

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import LevelExhaustedError
from refimpl.ckks.bootstrap.placement import Block, Piece, greedy, place, simulate
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
    plan = greedy([Block(f"b{i}", c) for i, c in enumerate(costs)], start, top)
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
    plan = greedy(blocks, start_level=19, bootstrap_level=19)
    assert all(s.level_out >= 0 for s in plan.steps)
    assert plan.bootstraps == brute_force_min([c for b in blocks for _, c in b.pieces()], 19, 19)
    assert "quickmax[6]" in plan.table()
    with pytest.raises(LevelExhaustedError, match="needs 119 levels"):
        greedy([Block("quickmax", 119)], 19, 19)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 4), st.booleans()), min_size=2, max_size=8),
       st.integers(9, 12), st.integers(0, 12))
def test_place_is_optimal(chain, top, start):
    """CKKS-PLAN-1 / NEXUS-BERT-PLAN: `place` refreshes the fewest ciphertexts: brute force over every set of positions."""
    start = min(start, top)
    pieces = [Piece(f"p{i}", c, w, bootable=b or i == 0) for i, (c, w, b) in enumerate(chain)]
    pieces.append(Piece("j", 1, 1, join=("in", "p0", 0)))  # the residual: joins the first piece's input
    best = None
    for k in range(len(pieces) + 1):
        for boots in itertools.combinations([i for i, p in enumerate(pieces) if p.bootable], k):
            rows, fail = simulate(pieces, set(boots), start, top)
            if fail is None:
                cost = sum(r["bootstraps"] for r in rows)
                best = cost if best is None else min(best, cost)
    if best is None:
        with pytest.raises(ValueError, match="no bootstrap placement"):
            place(pieces, start, top)
    else:
        assert sum(r["bootstraps"] for r in place(pieces, start, top)) == best


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 4), st.booleans(), st.floats(0, 8)), min_size=2, max_size=8),
       st.integers(9, 12), st.floats(0, 20))
def test_time_weighted_place_is_optimal(chain, top, boot_s):
    """NEXUS-BERT-PLAN-TIME: with limb_s and boot_s, `place` finds the least derived time (refreshed
    ciphertexts x boot_s + limb_s x (level + 1) per piece) that brute force finds; zero seconds per
    limb give the fewest-refreshes plan."""
    pieces = [Piece(f"p{i}", c, w, bootable=b or i == 0) for i, (c, w, b, _) in enumerate(chain)]
    pieces.append(Piece("j", 1, 1, join=("in", "p0", 0)))
    limb_s = {f"p{i}": t for i, (*_, t) in enumerate(chain)}

    def seconds(rows):
        return sum(r["bootstraps"] * boot_s + limb_s.get(r["block"], 0.0) * (r["level_in"] + 1) for r in rows)

    best = None
    for k in range(len(pieces) + 1):
        for boots in itertools.combinations([i for i, p in enumerate(pieces) if p.bootable], k):
            rows, fail = simulate(pieces, set(boots), top, top)
            if fail is None:
                best = seconds(rows) if best is None else min(best, seconds(rows))
    if best is None:
        return
    rows = place(pieces, top, top, limb_s=limb_s, boot_s=boot_s)
    assert seconds(rows) == pytest.approx(best, rel=1e-9, abs=1e-5)  # the DP counts whole microseconds
    plain = place(pieces, top, top)
    zero = place(pieces, top, top, limb_s={}, boot_s=1.0)
    assert sum(r["bootstraps"] for r in zero) == sum(r["bootstraps"] for r in plain)
    assert seconds(rows) <= seconds(plain) + 1e-5


def test_time_weighted_place_refuses_half_or_negative_weights():
    pieces = [Piece("a", 2, 1), Piece("b", 2, 1)]
    with pytest.raises(ValueError, match="needs both limb_s"):
        place(pieces, 3, 3, limb_s={"a": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        place(pieces, 3, 3, limb_s={"a": -1.0}, boot_s=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        place(pieces, 3, 3, limb_s={"a": 1.0}, boot_s=float("nan"))
    with pytest.raises(ValueError, match=r"limb_s \{'b': nan\}"):
        place(pieces, 3, 3, limb_s={"a": 1.0, "b": float("nan")}, boot_s=1.0)
    with pytest.raises(ValueError, match=r"names no piece of the chain: \['QKV'\]"):
        place(pieces, 3, 3, limb_s={"QKV": 1.0}, boot_s=1.0)
