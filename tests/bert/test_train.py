"""Training loop, losses and model surgery (spec BERT-TRAIN-*)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.bert import glue
from refimpl.bert import train as T
from refimpl.bert.config import BertConfig
from refimpl.bert.model import forward, init_params

TINY = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=16, max_position_embeddings=32, num_labels=2)


def tiny_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    ids, types = [], []
    for _ in range(n):
        k = int(rng.integers(3, 9))
        ids.append([2, *rng.integers(5, 40, k).tolist(), 3])
        types.append([0] * (k + 2))
    labels = np.array([int(r[1] % 2) for r in ids], np.int64)
    return ids, types, labels


def numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("which", ["ce", "soft", "mse", "mse_w"])
def test_loss_gradients_match_finite_differences(which):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 3))
    y = rng.normal(size=(4, 3))
    labels = np.array([0, 2, 1, 2])
    w = (rng.random((4, 1)) > 0.3).astype(float)
    w[0] = 1
    fn = {"ce": lambda: T.cross_entropy(x, labels), "soft": lambda: T.soft_cross_entropy(x, y, 2.0),
          "mse": lambda: T.mse(x, y), "mse_w": lambda: T.mse(x, y, w)}[which]
    _, g = fn()
    np.testing.assert_allclose(g, numeric_grad(lambda: fn()[0], x), rtol=1e-6, atol=1e-9)


def test_losses_known_values():
    loss, _ = T.cross_entropy(np.zeros((2, 4)), np.array([0, 3]))
    assert loss == pytest.approx(np.log(4))
    logits = np.array([[2.0, -1.0, 0.5]])
    # soft CE to itself is the entropy of softmax(logits)
    p = np.exp(logits) / np.exp(logits).sum()
    assert T.soft_cross_entropy(logits, logits)[0] == pytest.approx(-(p * np.log(p)).sum())
    assert T.mse(np.array([1.0, 3.0]), np.array([0.0, 0.0]))[0] == 5.0
    with pytest.raises(ValueError, match="do not match"):
        T.cross_entropy(np.zeros((2, 3)), np.array([0]))


def test_training_lowers_the_loss_and_resume_equals_uninterrupted(tmp_path):
    ids, types, labels = tiny_data()
    params = init_params(TINY, np.random.default_rng(0), np.float64)
    task = glue.TASKS["SST-2"]
    sched = T.Schedule(epochs=12, batch_size=8, lr=1e-2, seed=5, save_every=4, dropout=0.1)
    loss_fn = T.finetune_loss(TINY, task, sched.dropout, sched.seed)
    full = T.train(params, ids, types, labels, loss_fn, sched)
    # interrupted after 7 steps (a checkpoint in between at step 4 and at the stop), resumed twice
    T.train(params, ids, types, labels, loss_fn, sched, run_dir=tmp_path, stop_after=7)
    T.train(params, ids, types, labels, loss_fn, sched, run_dir=tmp_path, stop_after=20)
    resumed = T.train(params, ids, types, labels, loss_fn, sched, run_dir=tmp_path)
    for k in full:
        np.testing.assert_array_equal(full[k], resumed[k], err_msg=k)

    def mean_loss(p):
        b = T.pad(ids, types, 0) if hasattr(T, "pad") else None
        res = forward(p, TINY, b.input_ids, b.token_type_ids, b.attention_mask)
        return T.cross_entropy(res.logits, labels)[0]

    assert mean_loss(full) < 0.7 * mean_loss(params)
    with pytest.raises(ValueError, match="another schedule"):
        T.train(params, ids, types, labels, loss_fn, T.Schedule(epochs=1, batch_size=8, seed=6), run_dir=tmp_path)


def test_a_longer_constant_rate_checkpoint_resumes_a_shorter_run_only_up_to_its_end(tmp_path):
    """A constant-rate run's first steps do not depend on its epochs (train.continues), so a
    shorter run may resume a longer run's checkpoint taken within its own steps, and equals the
    shorter run made at once; a checkpoint past the shorter run's end is refused."""
    ids, types, labels = tiny_data()
    params = init_params(TINY, np.random.default_rng(0), np.float64)
    loss_fn = T.finetune_loss(TINY, glue.TASKS["SST-2"])
    sched = lambda e: T.Schedule(epochs=e, batch_size=8, lr=1e-2, warmup=0.0, seed=5, save_every=4, schedule="constant")
    short = T.train(params, ids, types, labels, loss_fn, sched(2))  # 10 steps
    T.train(params, ids, types, labels, loss_fn, sched(4), run_dir=tmp_path / "a", stop_after=8)
    resumed = T.train(params, ids, types, labels, loss_fn, sched(2), run_dir=tmp_path / "a")
    for k in short:
        np.testing.assert_array_equal(short[k], resumed[k], err_msg=k)
    T.train(params, ids, types, labels, loss_fn, sched(4), run_dir=tmp_path / "b", stop_after=12)
    with pytest.raises(ValueError, match="past the 10 steps of this 2-epoch run"):
        T.train(params, ids, types, labels, loss_fn, sched(2), run_dir=tmp_path / "b")


def test_checkpoints_sum_the_training_seconds_of_every_session(tmp_path, monkeypatch):
    """A resumed run adds its own seconds to the checkpoint's; a checkpoint without them stays unknown."""
    ids, types, labels = tiny_data()
    params = init_params(TINY, np.random.default_rng(0), np.float64)
    sched = T.Schedule(epochs=2, batch_size=8, lr=1e-2, seed=5, save_every=4)
    task_loss = T.finetune_loss(TINY, glue.TASKS["SST-2"])
    now = [1000.0]
    monkeypatch.setattr(T.time, "time", lambda: now[0])

    def loss_fn(*args):  # every step takes 10 s of the mocked clock; the time between sessions is not counted
        now[0] += 10.0
        return task_loss(*args)

    assert T.trained_seconds(tmp_path) is None  # no checkpoint yet
    T.train(params, ids, types, labels, loss_fn, sched, run_dir=tmp_path, stop_after=3)
    assert T.trained_seconds(tmp_path) == 30.0
    now[0] += 5000.0
    T.train(params, ids, types, labels, loss_fn, sched, run_dir=tmp_path, stop_after=3)
    assert T.trained_seconds(tmp_path) == 60.0
    state = json.loads((tmp_path / T.STATE).read_text())
    del state["seconds"]  # a checkpoint of a version that did not record them
    (tmp_path / T.STATE).write_text(json.dumps(state))
    T.train(params, ids, types, labels, loss_fn, sched, run_dir=tmp_path)
    assert json.loads((tmp_path / T.STATE).read_text())["step"] == T.total_steps(len(ids), sched)
    assert T.trained_seconds(tmp_path) is None


def test_epoch_batches_depend_on_seed_and_epoch_only():
    lengths = [5, 3, 9, 3, 7, 5, 2, 8, 6, 4]
    s = T.Schedule(batch_size=3, seed=1)
    a = T.epoch_batches(lengths, s, 0)
    assert [x.tolist() for x in a] == [x.tolist() for x in T.epoch_batches(lengths, s, 0)]
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert T.total_steps(10, T.Schedule(batch_size=3, epochs=1.5)) == 6


def test_select_layers_and_prune_vocabulary():
    params = init_params(TINY, np.random.default_rng(1))
    cfg, sel = T.select_layers(TINY, params, [1])
    assert cfg.num_hidden_layers == 1
    np.testing.assert_array_equal(sel["encoder.layer.0.output.dense.weight"], params["encoder.layer.1.output.dense.weight"])
    assert not any(k.startswith("encoder.layer.1.") for k in sel)
    with pytest.raises(ValueError, match="layer map"):
        T.select_layers(TINY, params, [2])
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
    cfg2, pruned, kept = T.prune_vocabulary(TINY, params, vocab, [7, 12, 7])
    assert kept == vocab[:5] + ["w2", "w7"]
    assert cfg2.vocab_size == 7
    np.testing.assert_array_equal(pruned["embeddings.word_embeddings.weight"][6],
                                  params["embeddings.word_embeddings.weight"][12])


def test_pruned_vocabulary_tokenizes_like_the_full_one(tmp_path):
    from refimpl.bert.tokenizer import BertTokenizer
    from refimpl.bert.weights import minilm_available, minilm_dir

    if not minilm_available():
        pytest.skip("MiniLM package not installed")
    full = BertTokenizer(minilm_dir() / "vocab.txt")
    ex = glue.load("SST-2", "tests/bert/fixtures/glue", "dev")
    used = np.unique(np.concatenate(full.pieces_batch(ex.text_a)))
    vocab = T.read_vocab(minilm_dir() / "vocab.txt")
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=8)
    params = {"embeddings.word_embeddings.weight": np.arange(len(vocab), dtype=np.float32)[:, None]}
    _, pruned, kept = T.prune_vocabulary(cfg, params, vocab, used)
    T.write_vocab(tmp_path / "vocab.txt", kept)
    small = BertTokenizer(tmp_path / "vocab.txt")
    for s in ex.text_a:
        a, b = full.encode(s)[0], small.encode(s)[0]
        assert [vocab[i] for i in a] == [kept[i] for i in b]
        # the pruned table's row of each new id is the full table's row of the old id
        np.testing.assert_array_equal(pruned["embeddings.word_embeddings.weight"][b, 0], np.array(a, np.float32))


def test_dropout_backward_matches_finite_differences_with_fixed_masks():
    """Model backward with BERT dropout (same seeded masks in every evaluation) vs central differences."""
    from refimpl.bert.model import backward

    cfg = TINY.replace(num_hidden_layers=1)
    params = init_params(cfg, np.random.default_rng(4), np.float64)
    ids, types, labels = tiny_data(4, seed=2)
    b = T.pad(ids, types, 0)

    def run(p):
        return forward(p, cfg, b.input_ids, b.token_type_ids, b.attention_mask, dropout=0.3,
                       rng=np.random.default_rng(11))

    res = run(params)
    loss, d = T.cross_entropy(res.logits, labels[:4])
    grads = backward(params, cfg, res, d)
    rng = np.random.default_rng(0)
    for name in ("encoder.layer.0.attention.self.value.weight", "encoder.layer.0.attention.output.dense.bias",
                 "encoder.layer.0.output.dense.weight", "embeddings.position_embeddings.weight",
                 "classifier.weight"):
        w = params[name]
        for _ in range(3):
            i = tuple(int(rng.integers(min(s, 6))) for s in w.shape)
            old = w[i]
            w[i] = old + 1e-6
            fp = T.cross_entropy(run(params).logits, labels[:4])[0]
            w[i] = old - 1e-6
            fm = T.cross_entropy(run(params).logits, labels[:4])[0]
            w[i] = old
            assert grads[name][i] == pytest.approx((fp - fm) / 2e-6, rel=1e-5, abs=1e-9), (name, i)
    # dropout changes the output; p = 0 and no rng is the plain forward
    plain = forward(params, cfg, b.input_ids, b.token_type_ids, b.attention_mask)
    assert not np.allclose(plain.logits, res.logits)
    with pytest.raises(ValueError, match="rng"):
        forward(params, cfg, b.input_ids, dropout=0.1)
