"""1/sqrt carried as (y, t = -u y^2 / 2) across a refresh (ours, refimpl.nexus.rsqrt_carry): the same iteration
as NEXUS §3.2's Newton + Goldschmidt (float64 law), the encrypted steps against the float64 model on a real ring,
and the point of it: a refresh's absolute error costs far less on (y, t) than on (y, -u/2)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import Parameters
from refimpl.nexus import rsqrt_carry as carry
from refimpl.nexus.bert.chain import newton_split
from refimpl.nexus.layernorm import initial_guess, rsqrt_plain

from .helpers import Kit, bits


@given(log_lo=st.floats(-14.0, -1.0), newton=st.integers(1, 12), gold=st.integers(0, 3))
@settings(max_examples=40, deadline=None)
def test_carried_form_is_newton_and_goldschmidt(log_lo, newton, gold):
    """NEXUS-LN-CARRY: y <- y (3/2 + t), t <- t (3/2 + t)^2 from t_0 = -u y_0^2 / 2 equals Newton's steps followed
    by Goldschmidt's (refimpl.nexus.layernorm.rsqrt_plain) up to float rounding, for any range and step counts."""
    lo = 2.0**log_lo
    u = np.geomspace(lo, 1.0, 257)
    ref = rsqrt_plain(u, lo, 1.0, newton, gold)
    np.testing.assert_allclose(carry.rsqrt_plain(u, lo, 1.0, newton, gold), ref, rtol=1e-12)


def test_levels_of_the_pieces():
    """NEXUS-LN-CARRY: 3 + 2 first, 2 rest, 2 G - 1: as many levels in all as the paper's form
    (1 + 2 first | 2 rest | 1 + 2 G); the split puts as many steps first as 1 + 2 per_piece levels hold."""
    for first, rest, g in ((5, 4, 2), (1, 1, 1), (6, 6, 3)):
        a, b, c = carry.levels(first, rest, g)
        assert (a, b, c) == (3 + 2 * first, 2 * rest, 2 * g - 1)
        assert a + b + c == (1 + 2 * first) + 2 * rest + (1 + 2 * g)
    assert carry.split(9, 8) == (7, 2) and carry.split(12, 8) == (7, 5) and carry.split(4, 2) == (1, 3)
    assert carry.levels(*carry.split(9, 8), 2)[0] == 1 + 2 * 8


@pytest.fixture(scope="module")
def kit():
    return Kit(Parameters.create(N=1024, levels=24, dnum=4, insecure=True))


def test_encrypted_steps_against_the_float64_model(kit):
    """NEXUS-LN-CARRY: `start` (y_0 at l - 1, t_0 at l - 2), `steps` (t 2 levels each, y one above) and the last
    step (y only) on a real ring: v = d u with u over a range of ratio 8,000, 9 Newton + 2 Goldschmidt steps as
    7 | 2 | 2: within 2^-14 relative of the float64 model, which is within 2^-10 of 1/sqrt(u); t_0 within 2^-15
    relative everywhere (also where it is small)."""
    d, lo, newton, first, rest, gold = 64, 1.25e-4, 9, 7, 2, 2
    u = np.geomspace(lo, 1.0, kit.p.slots)
    v = kit.encrypt(d * u)
    y, t = carry.start(kit.ev, v, lo, 1.0, 1.0 / d)
    assert (v.level - y.level, v.level - t.level) == (1, 3)
    a, b = initial_guess(lo, 1.0)
    y0 = b - a * u
    t0 = -0.5 * u * y0 * y0
    assert np.max(np.abs(kit.decrypt(t) / t0 - 1)) < 2.0**-15
    y, t = carry.steps(kit.ev, y, t, first)
    assert v.level - t.level == carry.levels(first, rest, gold)[0] and y.level == t.level + 1
    lvl = t.level
    y, t = carry.steps(kit.ev, kit.ev.drop_level(y, t.level), t, rest)
    assert lvl - t.level == carry.levels(first, rest, gold)[1]
    lvl = t.level
    y, none = carry.steps(kit.ev, kit.ev.drop_level(y, t.level), t, gold, last=True)
    assert none is None and lvl - y.level == carry.levels(first, rest, gold)[2]
    got, model = kit.decrypt(y), rsqrt_plain(u, lo, 1.0, newton, gold)
    assert np.max(np.abs(got / model - 1)) < 2.0**-14
    assert np.max(np.abs(model * np.sqrt(u) - 1)) < 2.0**-10


def _refreshed(u, lo, newton, gold, eps, carried, rng):
    """The float64 model with a refresh at the split (each path's own: refimpl.nexus.bert.chain.newton_split) that
    adds uniform noise of eps times each value's power-of-two refresh bound (a bootstrap's absolute error):
    carried (y, t) with refimpl.nexus.rsqrt_carry's bounds, or the previous (y, -u/2) with y by 1.5 / sqrt(lo)."""
    first, rest = newton_split(newton, carried)
    a, b = initial_guess(lo, 1.0)
    y = b - a * u
    for _ in range(first):
        y = 1.5 * y - 0.5 * u * y**3
    noise = lambda x, bound: x + eps * 2.0 ** np.ceil(np.log2(bound)) * rng.uniform(-1, 1, x.shape)  # noqa: E731
    if carried:
        yb, tb = carry.bounds(lo)
        return carry.steps_plain(noise(y, yb), noise(-0.5 * u * y * y, tb), rest + gold)[0]
    y, w = noise(y, max(1.0, 1.5 / np.sqrt(lo))), noise(-0.5 * u, 0.5)  # hi / 2 = 1/2
    for _ in range(rest):
        y = 1.5 * y + w * y**3
    x, h = -2 * w * y, 0.5 * y
    for _ in range(gold):
        r = 0.5 - x * h
        x, h = x + x * r, h + h * r
    return 2 * h


def test_a_refresh_costs_the_carried_form_far_less():
    """NEXUS-LN-CARRY: at BERT-base's second LayerNorm (range ratio 8,000, 9 Newton steps, 2 Goldschmidt) with 2^-19
    of each bound added at the refresh (a 19-bit bootstrap): the previous (y, -u/2) ends up 0.6 % off its noiseless
    value at the bottom of the range, the carried (y, t) at most 2^-11 (y's own refresh error, at the top), more than
    10x closer at the worst point; with no noise the two are equal."""
    lo, newton, gold = 1.25e-4, 9, 2
    u = np.geomspace(lo, 1.0, 4001)
    rng = np.random.default_rng(0)
    exact = [_refreshed(u, lo, newton, gold, 0.0, c, rng) for c in (True, False)]
    np.testing.assert_allclose(exact[0], exact[1], rtol=1e-12)
    err = {c: np.max(np.abs(_refreshed(u, lo, newton, gold, 2.0**-19, c, rng) / exact[0] - 1)) for c in (True, False)}
    assert err[False] > 4e-3  # the previous path's loss is real ...
    assert err[True] < 2.0**-11 and err[True] < err[False] / 10, err  # ... and the carried form's is not


def test_whole_carry_moves_two_levels_and_keeps_the_total():
    """Option rsqrt_carry_whole: an unsplit 1/sqrt (Newton steps <= NEWTON_PER_PIECE) also carries (y, t): pieces
    .rsqrt (3 + 2 newton levels) and .gold (2 G - 1) with t's bound 1/2, no .newton; the same levels in all."""
    from refimpl.nexus.bert.chain import NEWTON_PER_PIECE, layernorm_pieces
    from refimpl.nexus.layernorm import GOLDSCHMIDT

    for newton in range(1, NEWTON_PER_PIECE + 1):
        ln = (0.1, 0.05, 30.0, newton)
        old = layernorm_pieces("ln", ln, 6, 768, ("in", "qkv", 0), 8.0, carry=True)
        new = layernorm_pieces("ln", ln, 6, 768, ("in", "qkv", 0), 8.0, carry=True, whole=True)
        assert [p.name for p in new] == ["ln", "ln.rsqrt", "ln.gold", "ln.out"] == [p.name for p in old]
        assert [p.cost for p in new][1:3] == [3 + 2 * newton, 2 * GOLDSCHMIDT - 1]
        assert sum(p.cost for p in new) == sum(p.cost for p in old)
        assert new[2].bounds[1] == 0.5 and old[2].bounds[1] == 30.0


def test_whole_carry_refreshes_with_less_error_in_a_small_forward():
    """Softmax + GELU, two layers (N = 2^10, hidden 32): exact refreshes stay within CKKS noise of the float64 model
    with the option; with 2^-16 at every refresh its largest per-layer error is below 0.8x that without it (the
    refresh of LayerNorm 2's (y, u) in Goldschmidt's steps renews t instead of u)."""
    from refimpl.experiments.bertbase import noise

    size = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    off = noise.run("softmax-gelu", 16, size, 10, ["16"], layers=2, all_layers=True,
                    options={"rsqrt_carry_whole": False})[0]
    ex, on = noise.run("softmax-gelu", 16, size, 10, ["exact", "16"], layers=2, all_layers=True,
                       options={"rsqrt_carry_whole": True})
    assert max(ex["layer_err"]) < 1e-4
    assert max(on["layer_err"]) < 0.8 * max(off["layer_err"])


def test_whole_carry_only_where_the_variance_range_is_wide():
    """Option rsqrt_carry_whole (default on): an unsplit 1/sqrt is carried whole only where a refresh of u would leave
    y a relative error above LN_CARRY_ERROR, (hi / lo) 2^-LN_GUARD_BITS / 2; narrow ranges keep the paper's pieces.
    At BERT-base (the shipped models' widest ranges): Softmax + GELU's LayerNorm 2 (hi / lo = 693) carried whole, its
    LayerNorm 1 and the student's (split LayerNorm 2 carried anyway) not, so the student's plan is the option-off plan."""
    from refimpl.experiments import bertbase as bb
    from refimpl.nexus.bert import chain
    from refimpl.nexus.bert.chain import LN_CARRY_ERROR, LN_GUARD_BITS, carry_whole, layernorm_pieces

    edge = 2 * LN_CARRY_ERROR * 2.0**LN_GUARD_BITS  # hi / lo where the rule switches
    for ratio, expect in ((edge / 1.01, False), (edge * 1.01, True)):
        ln = (1.0, 1.0 / ratio, 1.0, 4)
        assert carry_whole(ln, True) is expect and carry_whole(ln, False) is False
        pieces = layernorm_pieces("ln", ln, 6, 768, ("in", "qkv", 0), 8.0, carry=True, whole=True)
        assert [p.name for p in pieces] == ["ln", "ln.rsqrt", "ln.gold", "ln.out"]
        assert pieces[1].cost == (3 if expect else 1) + 2 * 4

    whole = {}
    for name in ("softmax-gelu", "2quad-freediv-quad"):
        cfg = bb.config(name, layers=2)
        plans = {}
        for on in (True, False):
            model = bb.synthetic_model(cfg, bb.widest_ranges(bb.shipped_ranges(name), 2),
                                       options={"rsqrt_carry_whole": on})
            plans[on] = chain.plan(model, 128, bb.PRESET, head_rows=True)
        whole[name] = {k: carry_whole(v, True) and newton_split(v[3], True)[1] == 0
                       for k, v in model.settings()["ln"].items()}
        if name == "2quad-freediv-quad":
            assert plans[True] == plans[False]
        else:
            boots = {on: sum(r["bootstraps"] for r in plans[on]) for on in plans}
            assert boots[True] == boots[False] + 2  # the variance of each layer's LayerNorm 2 refreshed
    assert whole == {"softmax-gelu": {"L0.ln1": False, "L1.ln1": False, "L0.ln2": True, "L1.ln2": True},
                     "2quad-freediv-quad": {k: False for k in ("L0.ln1", "L1.ln1", "L0.ln2", "L1.ln2")}}
