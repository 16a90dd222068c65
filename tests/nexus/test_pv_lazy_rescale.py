"""P V with lazy rescaling (refimpl.nexus.bert.attention_quads.pv_lazy, ours) against pv_quads (the oracle) and numpy
on a real N = 2^11 ring, and its counts at BERT-base size on the DryEvaluator."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.ckks.bootstrap.bootstrapper import bootstrap_preset
from refimpl.experiments import bertbase as bb
from refimpl.nexus.bert import attention_quads as aq
from refimpl.nexus.counting import DryEvaluator

from refimpl.nexus.bert.chain import pv_join, pv_mul_levels

from .test_bertbase_attention import assert_no_worse, assert_pv_output, forward_errors, forward_of, pv_inputs
from .test_bertbase_attention_quads import PV_ROWS, pv_setup

LAZY_ROWS = [{"block": "L0.pv.mask", "bootstrap": False, "level_in": 4, "level_out": 3},
             {"block": "L0.pv.mul", "bootstrap": False, "level_in": 3, "level_out": 1}]


@pytest.mark.parametrize("heads,shared", [(4, False), (8, True), (8, False)])
def test_pv_lazy_equals_pv_quads_and_numpy(heads, shared):
    """NEXUS-BERT-PV-LAZY: pv_quads with lazy rescaling, its probabilities one level higher, decrypts to pv_quads (the
    oracle) and to numpy within CKKS noise, at the same output level and scale, zero outside the chunks' slots and on
    the inactive windows, with one rescale per output chunk in pv.mul and half the ciphertext products (N = 2^11,
    heads of 8: 4 heads in one chunk, or 8 in a chunk pair; n = 14 of n_pad = 16, two padded keys)."""
    kit, ev, fw, lay, n, mask = pv_setup(heads)
    Pm, V, paired, vc = pv_inputs(kit, lay, n, mask, 6)
    key = fw.vec.key
    ev.reset()
    pds = aq.head_probs(ev, paired, lay, key, True)  # level 3 -> 2
    old = aq.pv_quads(ev, pds, vc, lay, shared=shared)
    c_old = dict(ev.counts)
    up = [kit.encrypt(kit.decrypt(c), level=4) for c in paired]  # the probabilities one level higher
    ev.reset()
    pds = aq.head_probs(ev, up, lay, key, True)
    assert {d.level for d in pds} == {3}
    ev.counts.clear()
    new = aq.pv_quads(ev, pds, vc, lay, shared=shared, lazy_rescale=True)
    assert_pv_output(kit, lay, n, new, old, Pm, V)
    nc = lay.chunks(lay.d)
    assert ev.counts["rescales"] == 3 * nc  # two per output chunk + each chunk's skew
    assert ev.counts["ct_mults"] * lay.chunk // lay.head_dim == c_old["ct_mults"] or lay.heads < 2


def test_pv_lazy_counts_at_bert_base():
    """NEXUS-BERT-PV-LAZY: BERT-base (n = 128, dh = 64, N = 2^16) on the DryEvaluator: pv.mul with lazy rescaling has
    the same 420 key switches, 48 relinearizations and 6 conjugations as pv_quads with shared probabilities, 384
    ciphertext products instead of 768 and 18 rescales instead of 780 (6 skews, then 2 per output chunk instead of
    768 masked rotations + 1 per chunk); the probabilities at level 9 give the output at 7, as pv_quads' at 8 do."""
    p, _ = bootstrap_preset(bb.PRESET)
    cfg = bb.config("softmax-gelu", layers=1)
    out = {}
    for lazy, top in ((False, 9), (True, 10)):
        ev = DryEvaluator(p)
        fw, lay = forward_of(cfg, ev, 128, np.ones(128))
        pds = [d for k in range(lay.score_cts) for d in aq.quad_probs(ev, ev.fresh(top), lay, fw.vec.key, k)]
        ev.counts.clear()
        res = aq.pv_quads(ev, pds, [ev.fresh(10) for _ in range(lay.chunks(lay.d))], lay, shared=True,
                          lazy_rescale=lazy)
        assert [c.level for c in res] == [7] * 6
        out[lazy] = dict(ev.counts)
    for k in ("key_switches", "relinearizations", "conjugations"):
        assert out[True][k] == out[False][k], k
    assert (out[False]["key_switches"], out[False]["relinearizations"]) == (420, 48)
    assert (out[False]["ct_mults"], out[True]["ct_mults"]) == (768, 384)
    assert (out[False]["rescales"], out[True]["rescales"]) == (780, 18)


def test_forward_pv_lazy_option_and_plan():
    """NEXUS-BERT-PV-LAZY: Forward.pv with the model option pv_lazy on its plan rows (pv.mul two levels,
    V two levels above QKV's input instead of three) decrypts to the option off (the oracle, on its rows) and to
    numpy at the same output level and scale (N = 2^11, 8 heads of 8, n = 14 of 16)."""
    kit, ev, fw, lay, n, mask = pv_setup(8)
    Pm, V, paired, vc = pv_inputs(kit, lay, n, mask, 7)
    assert (pv_join(fw.st, lay), pv_mul_levels(fw.st, lay)) == (3, 1)
    lazy = {**fw.st, "pv_lazy": True}
    assert (pv_join(lazy, lay), pv_mul_levels(lazy, lay)) == (2, 2)
    fw.rows, fw.i = PV_ROWS, 0
    old = fw.pv(0, paired, vc)
    fw.rows, fw.i, fw.st = LAZY_ROWS, 0, lazy
    new = fw.pv(0, [kit.encrypt(kit.decrypt(c), level=4) for c in paired], vc)
    assert_pv_output(kit, lay, n, new, old, Pm, V)


@pytest.mark.slow
def test_forward_with_lazy_pv_no_worse_than_the_oracle():
    """NEXUS-BERT-PV-LAZY: the whole student forward (2 layers, 8 heads of 8 in one chunk pair, n = 14 of 16,
    N = 2^11, oracle refreshes, each on its own plan) with pv_lazy and without (the oracle): the same logits within
    CKKS noise, errors against the float64 model no worse than the oracle's, no more key switches (P V's are the
    same; the plans' refreshes differ)."""
    old, new = forward_errors("2quad-freediv", 8, 7, [({}, {}), ({"pv_lazy": True}, {})])
    assert_no_worse(new, old)
    assert new[3] <= old[3]
