"""Tests written for the mutants of `python tests/mutation.py sample nexus-blocks` that survived
(docs/testing.md). Every expected value is computed independently (Python loops, the documented limits)."""

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.ckks.bootstrap import OracleBootstrapper
from refimpl.nexus.argmax import argmax
from refimpl.nexus.compression import PlacementError, compress_many, expand_input, placement, subs_elements
from refimpl.nexus.folding import round_levels
from refimpl.nexus.gelu import gelu, gelu_plain
from refimpl.nexus.matmul import compress_matrix, layout_interleaved, matmul_compressed, subs_elements_for
from refimpl.nexus.softmax import (EXP_LEVELS, EXP_R, goldschmidt_iterations, inverse, inverse_levels, softmax,
                                   softmax_plain)
from refimpl.ring.sampling import RandomSource

from .helpers import Kit, bits


def test_layout_interleaved_every_group():
    """NEXUS §3.1.2: score ciphertext g holds S[g d + r, j] in slot j d + r, for every group g (the
    last one partial), zeros elsewhere."""
    n, d, slots = 10, 4, 64
    S = np.arange(1.0, 1.0 + n * n).reshape(n, n)
    for g in range((n + d - 1) // d):
        want = np.zeros(slots)
        for r in range(d):
            if g * d + r < n:
                for j in range(n):
                    want[j * d + r] = S[g * d + r, j]
        assert np.array_equal(layout_interleaved(S, g, d, slots), want)


@pytest.fixture(scope="module")
def kit():
    return Kit(Parameters.create(N=1024, levels=5, insecure=True))


def test_softmax_accepts_bounds_up_to_half_of_exps_range(kit):
    """NEXUS-SOFTMAX: entries in [-B, B] are accepted exactly when 2 B <= 2^r (a - max >= -2^r, the
    range of exp's (1 + x/2^r)^(2^r)), r = 6: B = 32 passes the range check (and fails the next, the
    layout's, on purpose: no encryption is run), B = 32.5 does not."""
    assert EXP_R == 6
    ct = kit.encrypt(np.zeros(4))
    with pytest.raises(ValueError, match="fill all"):
        softmax(kit.ev, ct, 8, 32.0)
    with pytest.raises(ValueError, match="scale the scores"):
        softmax(kit.ev, ct, 8, 32.5)


def test_placement_refuses_a_pack_that_is_not_a_placement():
    """NEXUS Alg. 5: a pack that places the value ids but transforms the values (here |x|) is refused,
    with the way out (--no-compress) in the message."""
    with pytest.raises(PlacementError, match="^pack_input is not a placement of values: use --no-compress$"):
        placement(lambda x: [np.abs(x).ravel()], 4, 2, 16)
    where = placement(lambda x: [x.ravel(), x.T.ravel()], 2, 2, 8)  # two layouts of the same values
    assert [[k for k, _ in w] for w in where] == [[0, 1]] * 4


def test_inverse_takes_the_documented_default_count(kit):
    """NEXUS-INV-LEVELS: without iters, inverse on [1, 2] takes k = 3 Goldschmidt factors ((1/3)^8 <= 2^-12 <
    (1/3)^4): k + 1 = 4 levels, relative error below 2^-12."""
    x = np.linspace(1.0, 2.0, kit.p.slots)
    out = inverse(kit.ev, kit.encrypt(x), 1.0, 2.0)
    assert kit.p.L - out.level == 4
    assert np.max(np.abs(kit.decrypt(out) * x - 1)) < 2.0**-11.5


@pytest.fixture(scope="module")
def mkit():
    p = Parameters.create(N=1024, levels=2, num_p=1, insecure=True)
    return Kit(p, elements=subs_elements_for(1024, 1024))


def test_matmul_compressed_below_the_top_level_at_its_own_scale(mkit):
    """NEXUS-MM-CTPT: compressed inputs one level down: the columns of A are encoded at the inputs' level
    and at pt_scale (the product's scale is the input's times pt_scale over q_l, up to the expansion's N)."""
    rng = np.random.default_rng(4)
    A, B = rng.uniform(-1, 1, (8, 4)), rng.uniform(-1, 1, (4, 2))
    cts = [mkit.ev.drop_level(c, 1) for c in compress_matrix(mkit.enc, mkit.E, B)]
    out = matmul_compressed(mkit.ev, A, cts, 2, pt_scale=2.0**20)
    ref = matmul_compressed(mkit.ev, A, cts, 2)
    assert all(o.level == 0 for o in out + ref)
    assert out[0].scale / ref[0].scale == pytest.approx(2.0**20 / mkit.p.scale)
    got = np.stack([mkit.decrypt(o)[:8] for o in out], axis=1)
    assert np.max(np.abs(got - A @ B)) < 1e-2


@pytest.fixture(scope="module")
def xkit():
    p = Parameters.create(N=64, levels=2, num_p=1, insecure=True)
    return Kit(p, elements=subs_elements(64, 64))


def test_compress_many_and_expand_input(xkit):
    """NEXUS Alg. 5 (input expansion): 10 x 9 values compressed into ceil(90 / N) = 2 ciphertexts (N = 64;
    the second holds 26, expanded as 32 leaves) expand into a layout of three ciphertexts of 32 slots each
    (values 32k .. 32k + 31, the last one partial), one level down at scale Delta; a layout with a
    fourth ciphertext no value lands in is refused; the "bootstrap" variant (masks times 1/B, refreshed,
    times B) gives the same values."""
    p = xkit.p
    x = np.random.default_rng(6).uniform(-3, 3, (10, 9))
    flat = x.ravel()

    def pack(v):
        v = np.asarray(v).ravel()
        return [v[i: i + 32] for i in range(0, v.size, 32)]

    cts = compress_many(xkit.enc, xkit.E, flat)
    assert len(cts) == 2 and all(c.level == p.L for c in cts)
    where = placement(pack, 10, 9, p.slots)
    out = expand_input(xkit.ev, cts, [64, 32], where, 3)
    assert [(o.level, o.scale) for o in out] == [(p.L - 1, p.scale)] * 3
    for k, want in enumerate(pack(flat)):
        assert np.max(np.abs(xkit.decrypt(out[k])[: want.size] - want)) < 1e-3
        assert np.max(np.abs(xkit.decrypt(out[k])[want.size:]), initial=0.0) < 1e-3  # the last one: 26 values
    with pytest.raises(PlacementError, match=r"no input value lands in ciphertexts \[3\]"):
        expand_input(xkit.ev, cts, [64, 32], where, 4)
    oracle = OracleBootstrapper(xkit.sk, output_level=p.L, rng=RandomSource.insecure_seeded(9))
    boot = expand_input(xkit.ev, cts, [64, 32], where, 3, bound=4, bootstrapper=oracle)
    assert oracle.calls == 3 and all(o.level == p.L for o in boot)
    for k, want in enumerate(pack(flat)):
        assert np.max(np.abs(xkit.decrypt(boot[k])[: want.size] - want)) < 1e-2


def test_packed_value_count_must_be_a_power_of_two():
    """NEXUS Alg. 5: the tree expands a power of two of values in [1, N]; 3, 0 and 2N are refused."""
    assert subs_elements(64, 4) == [65, 33]
    for n in (3, 0, 128):
        with pytest.raises(ValueError, match=f"must be a power of two in \\[1, N = 64\\], got {n}"):
            subs_elements(64, n)


@pytest.fixture(scope="module")
def deep():
    """N = 256 with 25 levels: one QuickMax round (17 levels, B = 1/2) and exp (7 + 1) fit after a refresh."""
    return Kit(Parameters.create(N=256, levels=25, insecure=True), rotations=[1, 2, -2, -4, 4])


def test_softmax_refreshes_where_the_levels_run_out(deep):
    """NEXUS-SOFTMAX: rows of 2 keys in windows of 4 (one QuickMax round of 17 levels). From level 12 the round needs a
    refresh (to 25) and leaves the maximum at 25 - 17 = 8 = EXP_LEVELS + 1: exp runs without one (down
    to level 1), the inverse after it needs the second, and the product lands at level 0. From level 1
    the input lies below the maximum (aligned down to it) and exp needs the refresh instead: the inverse
    then fits and the result lands at 25 - (7 + (k + 1) + 1). Both against the float64 model."""
    n, B, w = 2, 0.5, 4
    x = np.zeros((deep.p.slots // w, w))
    x[:, :n] = deep.rng.uniform(-B, B, (deep.p.slots // w, n))
    x = x.ravel()
    model = softmax_plain(x, n, B, window=w)
    tail = EXP_LEVELS + inverse_levels(goldschmidt_iterations(0.5, n)) + 1  # exp, inverse, product after a refresh
    for level, out_level in ((12, 0), (1, deep.p.L - tail)):
        bts = OracleBootstrapper(deep.sk, rng=RandomSource.insecure_seeded(level))
        out = softmax(deep.ev, deep.ev.drop_level(deep.encrypt(x), level), n, B, window=w, bootstrapper=bts)
        assert bts.calls == 2 and out.level == out_level
        assert np.max(np.abs(deep.decrypt(out) - model)) < 2.0**-18
    assert EXP_LEVELS + 1 == deep.p.L - round_levels(B)


def test_argmax_key_mask_hides_padded_keys_above_the_real_ones(deep):
    """NEXUS-ARGMAX: padded keys hold 0 on input; when every real key is negative the mask must keep the
    padded ones from winning (rows of 4 keys, 3 real, in windows of 8)."""
    rows = deep.p.slots // 8
    vals = np.stack([deep.rng.permutation([-0.4, -0.25, -0.1]) for _ in range(rows)])
    x = np.zeros((rows, 8)); x[:, :3] = vals
    mask = np.zeros((rows, 8)); mask[:, :3] = 1.0
    out = argmax(deep.ev, deep.encrypt(x.ravel()), 4, key_mask=mask.ravel(), window=8,
                 bootstrapper=OracleBootstrapper(deep.sk, rng=RandomSource.insecure_seeded(3)))
    z = deep.decrypt(out).reshape(rows, 8)[:, :4]
    assert np.max(np.abs(z - np.eye(4)[np.argmax(vals, axis=1)])) < 0.05


def test_gelu_uses_the_declared_input_range(gkit):
    """NEXUS-GELU: inputs declared in [-1.95, 3] (Q's own piece): Q is evaluated in the Chebyshev basis of
    that range, 25 bits against the model (the basis of another interval, e.g. [3, 1], loses 6)."""
    x = np.linspace(-1.95, 3.0, gkit.p.slots)
    out = gelu(gkit.ev, gkit.encrypt(x), -1.95, 3.0)
    assert bits(gkit.decrypt(out) - gelu_plain(x)) >= 23


@pytest.fixture(scope="module")
def gkit():
    return Kit(Parameters.create(N=2048, levels=19, dnum=4, insecure=True))
