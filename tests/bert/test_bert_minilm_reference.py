"""Our float32 forward of all-MiniLM-L6-v2 against PyTorch + HF transformers (fixture).

The fixture fixtures/minilm_reference.npz was made once by fixtures/make_minilm_reference.py
(torch 2.13.0, transformers 5.23.0, the model in float64, eager attention). The batch holds a
single sentence, a sentence pair and a short sentence padded in the batch.

Spec IDs: BERT-FWD-REFERENCE, BERT-WEIGHTS-LOAD, BERT-ATTN-MASK, BERT-HEAD-POOL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refimpl.bert import layers as L
from refimpl.bert import model as M
from refimpl.bert import weights as W

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.npz"

pytestmark = pytest.mark.skipif(
    not W.minilm_available(),
    reason=f"the MiniLM weights package is not installed: {W.MINILM_INSTALL}",
)

# float32 forward vs the float64 reference: measured max error 2.5e-6 on hidden states and 5e-6
# on probabilities; the tolerance is 1e-4
TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def minilm():
    return W.load()


@pytest.fixture(scope="module")
def ours(minilm, ref):
    config, params = minilm
    return M.forward(params, config, ref["input_ids"], ref["token_type_ids"], ref["attention_mask"])


def test_loaded_config_is_minilm(minilm):
    # BERT-WEIGHTS-LOAD: config.json read, 6 x 384, 12 heads, 1536; pooler and position_ids dropped
    config, params = minilm
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size, config.vocab_size) == (6, 384, 12, 1536, 30522)
    assert all(v.dtype == np.float32 for v in params.values())
    assert not any(k.startswith("pooler.") for k in params) and "embeddings.position_ids" not in params
    assert len(params) == 5 + 6 * 16


def test_hidden_states_of_every_layer_match_hf(ours, ref):
    # BERT-FWD-REFERENCE: embeddings output and all 6 layers, every position (padded ones too)
    assert len(ours.hidden_states) == 7
    for i, h in enumerate(ours.hidden_states):
        assert h.dtype == np.float32
        np.testing.assert_allclose(h, ref["hidden_states"][i], rtol=0, atol=TOL, err_msg=f"hidden state {i}")


def test_attention_probs_match_hf_and_ignore_padding(ours, ref):
    # BERT-FWD-REFERENCE and BERT-ATTN-MASK: the padded sentence's keys get probability 0
    for i, p in enumerate(ours.attention_probs):
        np.testing.assert_allclose(p, ref["attentions"][i], rtol=0, atol=TOL, err_msg=f"layer {i}")
    pad = ref["attention_mask"] == 0  # [B, n]
    for p in ours.attention_probs:
        for b in range(pad.shape[0]):
            assert np.all(p[b][:, :, pad[b]] == 0.0)


def test_padding_does_not_change_the_real_tokens(minilm, ref, ours):
    # BERT-ATTN-MASK: the padded row alone (no padding) gives the same hidden states
    config, params = minilm
    k = int(ref["attention_mask"][2].sum())
    alone = M.forward(params, config, ref["input_ids"][2:3, :k], ref["token_type_ids"][2:3, :k])
    np.testing.assert_allclose(alone.hidden_states[-1][0], ours.hidden_states[-1][2, :k], atol=1e-5)


def test_pooled_outputs_match_hf(minilm, ref, ours):
    # BERT-HEAD-POOL: masked mean pooling; the tanh pooler (unused by our head) checks its weights
    config, params = minilm
    mean = L.pool(ours.hidden_states[-1], ref["attention_mask"], "mean")
    np.testing.assert_allclose(mean, ref["mean_pooled"], atol=TOL)
    raw = W.load_file(str(W.minilm_dir() / W.WEIGHTS_FILE))
    tanh_pooler = np.tanh(L.linear(ours.hidden_states[-1][:, 0], raw["pooler.dense.weight"], raw["pooler.dense.bias"]))
    np.testing.assert_allclose(tanh_pooler, ref["pooler_output"], atol=TOL)
    assert ours.logits is None  # MiniLM ships no classifier


def test_float64_forward_matches_tighter(ref):
    # BERT-FWD-REFERENCE: in float64 the difference is rounding of the float32-stored fixture only
    config, params = W.load(dtype=np.float64)
    out = M.forward(params, config, ref["input_ids"], ref["token_type_ids"], ref["attention_mask"])
    np.testing.assert_allclose(out.hidden_states[-1], ref["hidden_states"][-1], rtol=0, atol=2e-6)


def test_sentence_embeddings_end_to_end(minilm):
    # BERT-FWD-REFERENCE, end to end with our tokenizer and mean pooling (sentence-transformers'
    # use of the model): paraphrases close, unrelated sentences far. Measured: 0.72 for the
    # guitar pair, below 0.15 for the unrelated ones (bert-data anchor, a separate numpy forward)
    from refimpl.bert.tokenizer import minilm_tokenizer

    config, params = minilm
    texts = ["A man is playing a guitar.", "Someone is strumming a guitar.",
             "The stock market fell sharply today.", "A chef is cooking pasta in the kitchen."]
    batch = minilm_tokenizer().batch(texts)
    out = M.forward(params, config, batch.input_ids, batch.token_type_ids, batch.attention_mask)
    e = L.pool(out.hidden_states[-1], batch.attention_mask, "mean")
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    cos = e @ e.T
    assert cos[0, 1] > 0.6
    assert max(cos[0, 2], cos[0, 3], cos[1, 2], cos[2, 3]) < 0.3
