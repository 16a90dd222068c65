"""Tokenizer pipeline against HF BertTokenizerFast ids (fixture); GLUE readers, metrics, buckets.

Spec IDs: BERT-TOKENIZER, BERT-TRUNCATE, BERT-GLUE-READ, BERT-GLUE-METRICS, BERT-GLUE-BUCKET.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.bert import glue
from refimpl.bert import weights as W
from refimpl.bert.tokenizer import BertTokenizer, pad, truncate_longest_first

FIXTURES = Path(__file__).parent / "fixtures"
GLUE_DIR = FIXTURES / "glue"
needs_minilm = pytest.mark.skipif(not W.minilm_available(),
                                  reason=f"the MiniLM package (vocab.txt) is not installed: {W.MINILM_INSTALL}")


@pytest.fixture(scope="module")
def tok():
    return BertTokenizer(W.minilm_dir() / "vocab.txt")


@needs_minilm
def test_ids_match_hf_bert_tokenizer(tok):
    # BERT-TOKENIZER, BERT-TRUNCATE: accents, CJK, emoji ([UNK]), whitespace-only text,
    # pairs and longest-first truncation, against transformers' BertTokenizerFast
    ref = np.load(FIXTURES / "minilm_reference.npz")
    offset = 0
    for a, b, n in zip(ref["tok_text_a"], ref["tok_text_b"], ref["tok_lengths"]):
        ids, types = tok.encode(str(a), str(b) if b else None, int(ref["tok_max_length"]))
        assert ids == ref["tok_ids"][offset: offset + n].tolist(), (a, b)
        assert types == ref["tok_types"][offset: offset + n].tolist(), (a, b)
        offset += n


@needs_minilm
def test_batch_matches_reference_batch(tok):
    # BERT-TOKENIZER: the padded batch of the forward fixture (single, pair, short padded)
    import json

    ref = np.load(FIXTURES / "minilm_reference.npz")
    rows = json.loads(str(ref["texts"]))
    batch = tok.batch([a for a, _ in rows], [b for _, b in rows])
    np.testing.assert_array_equal(batch.input_ids, ref["input_ids"])
    np.testing.assert_array_equal(batch.token_type_ids, ref["token_type_ids"])
    np.testing.assert_array_equal(batch.attention_mask, ref["attention_mask"])


@needs_minilm
def test_special_tokens_and_known_pieces(tok):
    # BERT-TOKENIZER: the standard bert-base-uncased ids, WordPiece continuation pieces
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.vocab_size) == (0, 100, 101, 102, 30522)
    assert tok.wordpiece.decode(tok.pieces("unaffable"), skip_special_tokens=False).replace(" ##", "") == "unaffable"
    assert all(tok.wordpiece.id_to_token(i).startswith("##") for i in tok.pieces("unaffable")[1:])


@given(na=st.integers(0, 40), nb=st.integers(0, 40), budget=st.integers(0, 40))
def test_truncate_longest_first_is_one_token_at_a_time(na, nb, budget):
    # BERT-TRUNCATE: the closed form equals removing from the longer, one token at a time; on a
    # tie the originally longer one keeps the odd token (B if they started equal), as HF tokenizers
    a, b = na, nb
    a_was_longer = na > nb
    while a + b > budget:
        if a > b:
            a -= 1
        elif b > a:
            b -= 1
        elif a_was_longer:
            b -= 1
        else:
            a -= 1
    assert truncate_longest_first(na, nb, budget) == (a, b)


def test_pad_builds_mask_and_types():
    batch = pad([[101, 5, 102], [101, 102]], [[0, 0, 0], [0, 0]], pad_id=0)
    np.testing.assert_array_equal(batch.input_ids, [[101, 5, 102], [101, 102, 0]])
    np.testing.assert_array_equal(batch.attention_mask, [[1, 1, 1], [1, 1, 0]])
    assert batch.input_ids.dtype == np.int64


def test_glue_readers_keep_every_row_with_quoting_off():
    # BERT-GLUE-READ: the STS-B fixture has fields starting with '"'; default CSV quoting loses a row
    stsb = glue.load("STS-B", GLUE_DIR)
    with open(GLUE_DIR / "STS-B" / "dev.tsv", newline="") as f:
        quoted = list(csv.DictReader(f, delimiter="\t"))
    assert len(stsb) == 8 and len(quoted) == 7
    assert stsb.text_a[4] == '"Then the captain was gone.'
    assert stsb.text_b[5] == "\"Satyrs don't exist\" - fine."
    np.testing.assert_allclose(stsb.labels, [5.0, 3.8, 3.8, 4.0, 0.8, 1.2, 2.6, 4.25])
    sst = glue.load("SST-2", GLUE_DIR)
    assert sst.text_b is None and sst.labels.tolist() == [1, 0, 1, 1, 0, 0]
    assert "clichés" in sst.text_a[4]
    rte = glue.load("RTE", GLUE_DIR)
    assert rte.labels.tolist() == [1, 0, 0]  # not_entailment = 1, entailment = 0
    assert rte.text_a[2].startswith('"Instead')
    assert (glue.TASKS["STS-B"].num_labels, glue.TASKS["RTE"].num_labels) == (1, 2)
    assert len(rte.subset([2, 0])) == 2 and rte.subset([2]).labels.tolist() == [0]


def test_glue_missing_file_says_where():
    with pytest.raises(FileNotFoundError, match="SST-2/train.tsv"):
        glue.load("SST-2", GLUE_DIR, "train")


def _pearson_oracle(x, y):
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return sxy / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def _ranks_oracle(x):
    return [sum(1 for v in x if v < a) + (sum(1 for v in x if v == a) + 1) / 2 for a in x]


@given(st.lists(st.tuples(st.integers(0, 5), st.floats(-3, 3, allow_nan=False)), min_size=3, max_size=30))
def test_pearson_spearman_match_python_oracles(pairs):
    # BERT-GLUE-METRICS: Pearson; Spearman with average ranks for ties (integer x has many ties)
    x = [float(a) for a, _ in pairs]
    y = [b for _, b in pairs]
    if len(set(x)) < 2 or len(set(y)) < 2:
        return
    np.testing.assert_allclose(glue.rankdata(np.array(x)), _ranks_oracle(x))
    np.testing.assert_allclose(glue.pearson(x, y), _pearson_oracle(x, y), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(glue.spearman(x, y), _pearson_oracle(_ranks_oracle(x), _ranks_oracle(y)),
                               rtol=1e-9, atol=1e-12)


def test_metrics_known_values_and_evaluate():
    # BERT-GLUE-METRICS
    assert glue.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert glue.spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    assert glue.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    out = glue.evaluate(glue.TASKS["SST-2"], np.array([[0.1, 0.9], [2.0, -1.0]]), np.array([1, 1]))
    assert out == {"accuracy": 0.5}
    reg = glue.evaluate(glue.TASKS["STS-B"], np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.5, 2.9]))
    assert set(reg) == {"pearson", "spearman"} and reg["spearman"] == pytest.approx(1.0)


@given(lengths=st.lists(st.integers(1, 50), min_size=1, max_size=80), batch=st.integers(1, 9),
       seed=st.integers(0, 1000))
def test_bucket_batches_cover_once_and_group_lengths(lengths, batch, seed):
    # BERT-GLUE-BUCKET: every index once; batches are contiguous runs of the length-sorted order
    rng = np.random.default_rng(seed)
    batches = list(glue.bucket_batches(lengths, batch, rng))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch for b in batches)
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    for (lo1, hi1), (lo2, hi2) in zip(spans, spans[1:]):
        assert hi1 <= lo2  # length ranges of different batches do not interleave
    assert [b.tolist() for b in glue.bucket_batches(lengths, batch)] == \
        [b.tolist() for b in glue.bucket_batches(lengths, batch)]  # deterministic without rng


GLUE_FULL = {"SST-2": (67349, 872), "STS-B": (5749, 1500), "RTE": (2490, 277)}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(GLUE_FULL))
def test_full_glue_files_have_the_published_row_counts(task):
    # BERT-GLUE-READ on the real files (slow; set REFIMPL_GLUE_DIR, e.g. ../shared/data/glue)
    import os

    data_dir = os.environ.get("REFIMPL_GLUE_DIR")
    if not data_dir:
        pytest.skip("set REFIMPL_GLUE_DIR to the GLUE directory to check the full files")
    train, dev = glue.load(task, data_dir, "train"), glue.load(task, data_dir, "dev")
    assert (len(train), len(dev)) == GLUE_FULL[task]
    if task == "RTE":
        assert train.labels.tolist().count(0) == 1249 and dev.labels.tolist().count(0) == 146


@needs_minilm
def test_glue_batches_are_the_encoded_rows_padded(tok):
    # BERT-GLUE-BUCKET with the tokenizer: each example once, each row equal to its own encoding
    rte = glue.load("RTE", GLUE_DIR)
    stsb = glue.load("STS-B", GLUE_DIR)
    for ex, max_length in ((rte, 32), (stsb, 128)):
        seen = []
        for batch, labels, index in glue.batches(ex, tok, 3, max_length=max_length, rng=np.random.default_rng(0)):
            np.testing.assert_array_equal(labels, ex.labels[index])
            for row, i in enumerate(index):
                ids, types = tok.encode(ex.text_a[i], None if ex.text_b is None else ex.text_b[i], max_length)
                k = len(ids)
                assert batch.input_ids[row, :k].tolist() == ids and batch.token_type_ids[row, :k].tolist() == types
                assert batch.attention_mask[row].sum() == k and np.all(batch.input_ids[row, k:] == tok.pad_id)
            assert batch.attention_mask.sum(axis=1).max() == batch.input_ids.shape[1]  # padded to the longest
            seen += index.tolist()
        assert sorted(seen) == list(range(len(ex)))
    assert max(len(r) for r in glue.encode(rte, tok, 32)[0]) == 32  # RTE premises are truncated
