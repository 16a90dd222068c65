"""Q K^T with lazy rescaling (refimpl.nexus.bert.attention.feature_products_lazy, ours) against the eager products
(the oracle) and numpy on a real N = 2^11 ring, and its counts at BERT-base size on the DryEvaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_preset
from refimpl.experiments import bertbase as bb
from refimpl.nexus.bert import attention as at
from refimpl.nexus.bert import attention_pairs as ap
from refimpl.nexus.bert.packing import paired_vector
from refimpl.nexus.counting import CountingEvaluator, DryEvaluator

from .test_bertbase_attention import assert_no_worse, forward_errors, forward_of, pair_kit


@pytest.mark.parametrize("attention", ["softmax", "2quad-freediv"])
def test_pair_scores_lazy_equal_eager_and_numpy(attention):
    """NEXUS-BERT-QK-LAZY: pair_scores with lazy rescaling, its inputs one level higher, decrypts to the eager
    pair_scores (the oracle) and to numpy within CKKS noise at the same output level, zero past the rows and on the
    inactive windows, with the same key switches, 2 rescales in the feature products instead of dh + 1 and one
    plaintext product instead of dh (N = 2^11, 4 heads of 8, n = 14 of n_pad = 16, two padded keys)."""
    cfg = bb.config(attention.replace("softmax", "softmax-gelu").replace("2quad-freediv", "2quad-freediv-quad"),
                    layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    p = Parameters.create(N=2048, levels=5, dnum=2, insecure=True)
    n = 14
    mask = np.r_[np.ones(n - 2), np.zeros(2)]
    kit = pair_kit(cfg, n, p)
    ev = CountingEvaluator(kit.ev)
    fw, lay = forward_of(cfg, ev, n, mask)
    w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
    rng = np.random.default_rng(4)
    Q, K = rng.normal(0, 1, (n, lay.d)), rng.normal(0, 1, (n, lay.d))
    scale, shift = (1 / math.sqrt(dh), 0.0) if attention == "softmax" else (0.3, 0.7)
    add = paired_vector(fw.vec.key_rows(0, shift), n_pad) if shift else None

    def pair_of(x, k, level):  # pair_projections' layout: head 2k on [0, n_pad), head 2k + 1 on [n_pad, 2 n_pad)
        a, b = (at.pack_head(x, lay, h).reshape(-1, w) for h in (2 * k, 2 * k + 1))
        v = np.zeros_like(a)
        v[:, :n_pad], v[:, n_pad:2 * n_pad] = a[:, :n_pad], b[:, :n_pad]
        return kit.encrypt(v.ravel(), level=level)

    runs = {}
    for lazy, level in ((False, 3), (True, 4)):
        ev.reset()
        z = [ap.pair_scores(ev, pair_of(Q, k, level), pair_of(K, k, level), lay, fw.vec.key, scale, add,
                            lazy_rescale=lazy) for k in range(lay.heads // 2)]
        runs[lazy] = (z, dict(ev.counts))
    (old, c_old), (new, c_new) = runs[False], runs[True]
    pairs = lay.heads // 2
    assert c_new["key_switches"] == c_old["key_switches"]
    assert c_old["rescales"] - c_new["rescales"] == pairs * (dh + 1 - 2)
    assert c_old["pt_mults"] - c_new["pt_mults"] == pairs * (dh - 1)
    t = np.arange(n)
    for k, (a, b) in enumerate(zip(new, old)):
        assert a.level == b.level == 1
        got = kit.decrypt(a)
        np.testing.assert_allclose(got, kit.decrypt(b), atol=1e-4)
        for half, h in enumerate((2 * k, 2 * k + 1)):
            s = Q[:, h * dh:(h + 1) * dh] @ K[:, h * dh:(h + 1) * dh].T * scale
            for r in range(n_pad):
                key = (t + r) % n_pad
                km = np.where(key < n, mask[np.minimum(key, n - 1)], 0.0)
                np.testing.assert_allclose(got[t * w + half * n_pad + r], km * (s[t, np.minimum(key, n - 1)] + shift),
                                           atol=1e-4)
        assert np.max(np.abs(got.reshape(-1, w)[:, 2 * n_pad:])) < 1e-4
        assert np.max(np.abs(got.reshape(-1, w)[n:])) < 1e-4


def test_pair_scores_lazy_counts_at_bert_base():
    """NEXUS-BERT-QK-LAZY: BERT-base (n = 128, dh = 64, N = 2^16) on the DryEvaluator: per head pair the same 109 key
    switches and 8 relinearizations, 3 rescales instead of 66 (the skewed keys' 1, then 2 instead of 64 + 1) and 1
    plaintext product instead of 64 in the feature products; level 10 -> 7 instead of 8, the baby steps of Q rotated
    at level 9."""
    p, _ = bootstrap_preset(bb.PRESET)
    cfg = bb.config("softmax-gelu", layers=1)
    out = {}
    for lazy in (False, True):
        ev = DryEvaluator(p)
        fw, lay = forward_of(cfg, ev, 128, np.ones(128))
        z = ap.pair_scores(ev, ev.fresh(10), ev.fresh(10), lay, fw.vec.key, 0.125, lazy_rescale=lazy)
        out[lazy] = (z.level, dict(ev.counts), dict(ev.ops))
    (l0, c0, o0), (l1, c1, o1) = out[False], out[True]
    assert (l0, l1) == (8, 7)
    assert (c0["key_switches"], c0["relinearizations"]) == (c1["key_switches"], c1["relinearizations"]) == (109, 8)
    assert (c0["rescales"], c1["rescales"]) == (66, 3)
    assert c0["pt_mults"] - c1["pt_mults"] == 63
    assert o0["modup@10"] - o1.get("modup@10", 0) == 1 and o1["modup@9"] - o0.get("modup@9", 0) == 1  # Q's baby steps


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["softmax", "2quad-freediv"])
def test_forward_with_lazy_qk_no_worse_than_the_oracle(attention):
    """NEXUS-BERT-QK-LAZY: the whole forward (2 layers, 4 heads of 8, n = 14 of 16, N = 2^11, oracle refreshes, each
    on its own plan: qk three levels with the option) with qk_lazy and without (the oracle): the same logits within
    CKKS noise, errors against the float64 model no worse than the oracle's, no more key switches (Q K^T's are the
    same; the plans' refreshes differ)."""
    old, new = forward_errors(attention, 4, 5, [({}, {}), ({"qk_lazy": True}, {})])
    assert_no_worse(new, old)
    assert new[3] <= old[3]
