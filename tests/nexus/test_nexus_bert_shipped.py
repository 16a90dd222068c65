"""The shipped small SST-2 models (2 MiniLM layers, hidden 384, 12 heads) through the encrypted forward
with real bootstrapping on an insecure toy ring (N = 2^12, 19 levels after bootstrapping).

Slow: about 11 (student) and 63 (Softmax + GELU) bootstrapped ciphertexts of ~2-10 s each per
sentence on this machine. The figures of the README come from `refimpl experiment nexus-bert`
(results/nexus/nexus_bert_*_toy2^12.json); these tests check the same pipeline on one short sentence.
"""

import pytest

from refimpl.bert import shipped
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.experiments.nexus_bert import run_sentences
from refimpl.nexus import bert as nb
from refimpl.nexus.counting import DryBootstrapper, DryEvaluator

SENTENCE = "a charming movie ."  # 6 tokens with [CLS] and [SEP]
CALIBRATION = ("a gorgeous , witty movie .", "the movie is a disaster .", "unflinchingly bleak and desperate",
               "it 's a charming journey .", SENTENCE)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", shipped.NAMES)
def test_shipped_model_encrypted(name):
    """NEXUS-BERT-SHIPPED: predictions equal, logits within 0.05 of the float64 model of the same
    approximations, per-layer errors reported, bootstraps as planned."""
    if not shipped.available(name):
        pytest.skip(f"shipped model {name} not built")
    m = shipped.load(name)
    model = nb.NexusModel(m.config, m.params)
    model.ranges = nb.calibrate(model, [shipped.encode(m, s) for s in CALIBRATION])
    ids, mask = shipped.encode(m, SENTENCE)
    params, rc = bootstrap_parameters(2**12, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
    res = run_sentences(model, [(SENTENCE, ids, mask)], params, rc, progress=lambda s: None)
    row = res["rows"][0]
    assert row["max_err_vs_model"] < 0.05
    assert row["pred_encrypted"] == row["pred_model"]
    assert max(row["layer_max_err_vs_model"]) < 0.5
    # bootstrap calls as the dry forward counts them (two ciphertexts per call where the refreshes pair them; the
    # plan's rows count ciphertexts refreshed)
    p, top = nb.bootstrap_level_of((params, rc), None)
    ev, dry = DryEvaluator(p), DryBootstrapper(p, top)
    lay = nb.input_layout(model.config, len(ids), p.slots)
    nb.encrypted_forward(ev, dry, model, [ev.fresh(top) for _ in range(lay.chunks(lay.d))], len(ids), mask)
    assert row["bootstraps"] == dry.calls
    assert dry.calls <= sum(r["bootstraps"] for r in nb.plan(model, len(ids), (params, rc)))
    if "2quad" in name:
        assert not any("softmax" in b or "gelu" in b for b in row["block_seconds"])
