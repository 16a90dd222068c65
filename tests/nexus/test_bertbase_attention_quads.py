"""P V with two hidden chunks per rotated ciphertext (refimpl.nexus.bert.attention_quads, ours) against the head-pair
P V (refimpl.nexus.bert.attention_pairs, the oracle) and numpy on a real N = 2^11 ring; its key switches at BERT-base
size on the DryEvaluator; the model option that selects it and the plan's extra level on V."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_preset
from refimpl.ckks.keys import conjugation_element
from refimpl.experiments import bertbase as bb
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import attention_quads as aq
from refimpl.nexus.bert.chain import pv_join
from refimpl.nexus.counting import CountingEvaluator, DryEvaluator

from .helpers import Kit
from .test_bertbase_attention import (
    assert_no_worse,
    assert_pv_output,
    forward_errors,
    forward_of,
    pv_inputs,
)

PV_ROWS = [{"block": "L0.pv.mask", "bootstrap": False, "level_in": 3, "level_out": 2},
           {"block": "L0.pv.mul", "bootstrap": False, "level_in": 2, "level_out": 1}]


def pv_setup(heads: int, n: int = 14):
    """(kit, counting evaluator, Forward, layout, n, mask): heads of 8 on N = 2^11 with the forward's keys and the
    conjugation, n = 14 of n_pad = 16 (two padded keys)."""
    cfg = bb.config("softmax-gelu", layers=1, hidden_size=8 * heads, num_attention_heads=heads, intermediate_size=64)
    p = Parameters.create(N=2048, levels=5, dnum=2, insecure=True)
    mask = np.r_[np.ones(n - 2), np.zeros(2)]
    steps = set(nb.rotation_steps(cfg, n, p.slots, head_rows=True))
    kit = Kit(p, rotations=sorted(s for s in steps if s % p.slots), elements=[conjugation_element(p)])
    ev = CountingEvaluator(kit.ev)
    fw, lay = forward_of(cfg, ev, n, mask)
    fw.st = {**fw.st, "pv_lazy": False}  # pv_quads' own products (its lazy rescaling: tests/nexus/test_pv_lazy_rescale.py)
    return kit, ev, fw, lay, n, mask


def pv_with(fw, ev, paired, vc, settings: dict) -> tuple:
    """(Forward.pv's output chunks, its key switches) with the model settings changed by `settings` (one P V piece)."""
    fw.rows, fw.i, fw.st = PV_ROWS, 0, {**fw.st, **settings}
    ev.reset()
    return fw.pv(0, paired, vc), ev.counts["key_switches"]


@pytest.mark.parametrize("heads", [4, 8])
def test_pv_quads_equal_pv_pairs_and_numpy(heads):
    """NEXUS-BERT-PV-QUADS: Forward.pv with the chunk pairs (the default) decrypts to the head-pair P V (the oracle,
    the option pv_quads off) and to numpy within CKKS noise, at the same level and scale, zero outside the chunks'
    slots and on the inactive windows, with fewer key switches (N = 2^11, heads of 8: 4 heads in one chunk, or 8 in
    two chunks sharing one rotated ciphertext; n = 14 of n_pad = 16, two padded keys; V three levels above P V)."""
    kit, ev, fw, lay, n, mask = pv_setup(heads)
    assert aq.applies(lay) and fw.pairs() and lay.chunks(lay.d) == heads // 4
    Pm, V, paired, vc = pv_inputs(kit, lay, n, mask, 6)
    assert pv_join(fw.st, lay) == 3
    (old, ks_old), (new, ks) = (pv_with(fw, ev, paired, vc, {"pv_quads": on}) for on in (False, True))
    assert_pv_output(kit, lay, n, new, old, Pm, V)
    assert ks < ks_old


def test_pv_quads_key_switches_at_bert_base():
    """NEXUS-BERT-PV-QUADS: BERT-base (n = 128, dh = 64, N = 2^16) on the DryEvaluator: 18 key switches to move the
    probabilities of the 6 score ciphertexts to the heads' offsets, 480 for P V per layer (160 per two chunks:
    14 + 15 + 1 + 6 + 28 + 63 + 16 + 15 + 2), 48 relinearizations, 6 conjugations, against attention_pairs' 804; one
    level from the probabilities, V two levels above them."""
    p, _ = bootstrap_preset(bb.PRESET)
    cfg = bb.config("softmax-gelu", layers=1)
    ev = DryEvaluator(p)
    fw, lay = forward_of(cfg, ev, 128, np.ones(128))
    assert aq.applies(lay) and fw.pairs()
    pds = [d for k in range(lay.score_cts) for d in aq.quad_probs(ev, ev.fresh(9), lay, fw.vec.key, k)]
    assert ev.counts["key_switches"] == 18 and [d.level for d in pds] == [8] * 12
    out = aq.pv_quads(ev, pds, [ev.fresh(10) for _ in range(lay.chunks(lay.d))], lay)
    assert [c.level for c in out] == [7] * 6
    assert (ev.counts["key_switches"], ev.counts["relinearizations"], ev.counts["conjugations"]) == (480, 48, 6)


@pytest.mark.parametrize("heads", [8, 12])
def test_shared_probabilities_equal_the_per_head_ones_and_numpy(heads):
    """NEXUS-BERT-PV-QUADS: Forward.pv with the probabilities of head hl of both chunks of a pair in one ciphertext
    (pv_quads' shared, the option pv_shared, the default) decrypts to the per-head baby steps (the oracle, pv_shared
    off) and to numpy within CKKS noise, at the same level and scale, zero outside the chunks' slots, with
    (g - 1) key switches fewer per two heads (N = 2^11, heads of 8, 4 per chunk: 2 chunks, one pair; or 3, a chunk
    alone, where nothing is shared)."""
    kit, ev, fw, lay, n, mask = pv_setup(heads)
    assert aq.shares_probs(lay) and lay.chunks(lay.d) == heads // 4
    Pm, V, paired, vc = pv_inputs(kit, lay, n, mask, 5)
    (old, ks_old), (new, ks) = (pv_with(fw, ev, paired, vc, {"pv_shared": on}) for on in (False, True))
    assert_pv_output(kit, lay, n, new, old, Pm, V)
    per, g = lay.chunk // lay.head_dim, aq.baby(lay.n_pad // 2)
    assert ks_old - ks == (g - 1) * per * (lay.chunks(lay.d) // 2)


def test_shared_probabilities_key_switches_at_bert_base():
    """NEXUS-BERT-PV-QUADS: BERT-base on the DryEvaluator: pv_quads with shared probabilities 462 - 6 x 7 = 420 key
    switches (two heads per baby-step set: dh + R - 1 = 127 <= P = 128; + 18 moving the probabilities: 438), the same relinearizations, conjugations and
    output levels."""
    p, _ = bootstrap_preset(bb.PRESET)
    cfg = bb.config("softmax-gelu", layers=1)
    ev = DryEvaluator(p)
    fw, lay = forward_of(cfg, ev, 128, np.ones(128))
    assert aq.shares_probs(lay)
    pds = [d for k in range(lay.score_cts) for d in aq.quad_probs(ev, ev.fresh(9), lay, fw.vec.key, k)]
    ev.counts.clear()
    out = aq.pv_quads(ev, pds, [ev.fresh(10) for _ in range(lay.chunks(lay.d))], lay, shared=True)
    assert [c.level for c in out] == [7] * 6
    assert (ev.counts["key_switches"], ev.counts["relinearizations"], ev.counts["conjugations"]) == (420, 48, 6)


def test_forward_with_shared_probabilities_no_worse_than_the_oracle():
    """NEXUS-BERT-PV-QUADS: the whole student forward (2 layers, 8 heads of 8 in 2 chunks (one chunk pair), n = 14 of 16,
    N = 2^11, oracle refreshes) with pv_shared and without (the oracle): the same logits within CKKS noise, errors against
    the float64 model no worse than the oracle's, fewer key switches."""
    old, new = forward_errors("2quad-freediv", 8, 7, [({"pv_shared": False}, {}), ({}, {})])
    assert_no_worse(new, old)
    assert new[3] < old[3]
