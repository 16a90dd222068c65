"""Distillation losses: gradients against finite differences in float64 (spec BERT-DISTILL-*)."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest

from refimpl.bert import distill as D
from refimpl.bert import ours
from refimpl.bert import glue
from refimpl.bert import train as T
from refimpl.bert.config import BertConfig
from refimpl.bert.model import forward, init_params
from refimpl.bert.tokenizer import pad

TEACHER = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=12, max_position_embeddings=16, num_labels=2)
STUDENT = TEACHER.replace(attention="2quad-freediv", activation="quad", num_hidden_layers=2)
LAYER_MAP = [0, 2]


def batch():
    ids = [[2, 7, 9, 11, 3], [2, 5, 3], [2, 8, 8, 3]]
    return pad(ids, [[0] * len(r) for r in ids], 0)


def teacher_and_student(rng):
    """A teacher with larger weights (scores and hidden states far from trivial) and its student:
    the mapped layers, perturbed."""
    teacher = init_params(TEACHER, rng, np.float64)
    for k, v in teacher.items():
        if k.endswith(".weight") and "LayerNorm" not in k:
            teacher[k] = v * 10
    _, student = T.select_layers(TEACHER, teacher, LAYER_MAP)
    return teacher, {k: v + rng.normal(0, 0.05, v.shape) for k, v in student.items()}


def probe(loss_of, params, grads, rng, count=4, eps=1e-6):
    """Compare `count` random entries of each probed tensor with central differences."""
    names = ["embeddings.word_embeddings.weight", "embeddings.LayerNorm.bias",
             "encoder.layer.0.attention.self.query.weight", "encoder.layer.1.attention.self.key.bias",
             "encoder.layer.1.intermediate.dense.weight", "encoder.layer.0.output.LayerNorm.weight",
             "classifier.weight"]
    for name in names:
        w = params[name]
        for _ in range(count):
            i = tuple(int(rng.integers(s)) for s in w.shape)
            if name == "embeddings.word_embeddings.weight":
                i = (int(rng.choice([2, 3, 5, 7, 8, 9, 11])), i[1])  # a row that is used
            old = w[i]
            w[i] = old + eps
            fp = loss_of(params)
            w[i] = old - eps
            fm = loss_of(params)
            w[i] = old
            num = (fp - fm) / (2 * eps)
            assert grads[name][i] == pytest.approx(num, rel=1e-5, abs=1e-8), (name, i)


def test_stage1_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    teacher, student = teacher_and_student(rng)
    b = batch()
    fn = D.stage1_loss(STUDENT, TEACHER, teacher, LAYER_MAP)
    loss, grads = fn(student, b, np.zeros(3, np.int64), np.arange(3), 0)
    assert loss > 0

    def loss_of(p):
        return fn(p, b, np.zeros(3, np.int64), np.arange(3), 0)[0]

    probe(loss_of, student, grads, rng)
    assert np.all(grads["classifier.weight"] == 0)  # stage 1 does not touch the head


@pytest.mark.parametrize("stage", [1, 2])
def test_student_dropout_gradient_matches_finite_differences_and_its_masks_follow_the_step(stage):
    """Dropout on the student (MPCFormer trains it in train mode): with the masks of one step fixed,
    the gradient is the central difference; another step draws other masks, the same step the same;
    at p = 0 the loss is the plain one."""
    rng = np.random.default_rng(5)
    teacher, student = teacher_and_student(rng)
    student["classifier.weight"] *= 20
    b, labels, index = batch(), np.array([1, 0, 1]), np.array([4, 0, 2])
    logits = rng.normal(size=(5, 2))

    def make(p):
        if stage == 1:
            return D.stage1_loss(STUDENT, TEACHER, teacher, LAYER_MAP, dropout=p, seed=3)
        return D.stage2_loss(STUDENT, glue.TASKS["SST-2"], logits, dropout=p, seed=3)

    fn = make(0.3)
    loss, grads = fn(student, b, labels, index, 7)
    assert fn(student, b, labels, index, 7)[0] == loss
    assert fn(student, b, labels, index, 8)[0] != loss
    assert make(0.0)(student, b, labels, index, 7)[0] != loss
    assert make(0.0)(student, b, labels, index, 7)[0] == make(0.0)(student, b, labels, index, 8)[0]
    probe(lambda q: fn(q, b, labels, index, 7)[0], student, grads, rng, count=3)


def test_distill_passes_each_stages_dropout_to_the_student():
    """distill() with schedules of dropout 0.5 ends elsewhere than with dropout 0 (same seed, same data)."""
    rng = np.random.default_rng(6)
    teacher = init_params(TEACHER, rng, np.float64)
    b = batch()
    ids = [list(map(int, r[:int(m.sum())])) for r, m in zip(b.input_ids, b.attention_mask)]
    types = [[0] * len(r) for r in ids]
    labels = np.array([1, 0, 1])
    ends = []
    for p in (0.0, 0.5):
        s1 = T.Schedule(epochs=1, batch_size=3, lr=1e-3, warmup=0.0, schedule="constant", dropout=p)
        s2 = T.Schedule(epochs=1, batch_size=3, lr=1e-3, dropout=p)
        for only in ((s1, None), (None, s2)):
            out = D.distill(TEACHER, teacher, STUDENT, LAYER_MAP, glue.TASKS["SST-2"], ids, types, labels, *only)
            ends.append(out["encoder.layer.0.attention.self.query.weight"])
    assert not np.allclose(ends[0], ends[2]) and not np.allclose(ends[1], ends[3])


def test_stage1_loss_is_zero_for_the_teacher_itself_and_ignores_padding():
    rng = np.random.default_rng(1)
    teacher = init_params(TEACHER, rng, np.float64)
    b = batch()
    res = forward(teacher, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
    loss, dh, ds = D.stage1_terms(res, res, b.attention_mask, [0, 1, 2])
    assert loss == 0.0 and all(np.all(d == 0) for d in dh + ds)
    # change the student's outputs only at padded positions: the loss stays zero
    other = forward(teacher, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
    other.hidden_states[1][1, 3:] += 5.0
    other.attention_scores[0][1, :, :, 3:] += 5.0
    assert D.stage1_terms(other, res, b.attention_mask, [0, 1, 2])[0] == 0.0
    other.hidden_states[1][1, 0] += 1.0
    assert D.stage1_terms(other, res, b.attention_mask, [0, 1, 2])[0] > 0.0


@pytest.mark.parametrize("task", ["SST-2", "STS-B"])
def test_stage2_gradient_matches_finite_differences(task):
    rng = np.random.default_rng(2)
    t = glue.TASKS[task]
    cfg = STUDENT.replace(num_labels=t.num_labels)
    params = init_params(cfg, rng, np.float64)
    params["classifier.weight"] *= 20
    b = batch()
    teacher_logits = rng.normal(size=(5, t.num_labels))
    labels = np.array([0.5, 3.0, 4.2]) if t.labels is None else np.array([1, 0, 1])
    index = np.array([4, 0, 2])
    fn = D.stage2_loss(cfg, t, teacher_logits)
    loss, grads = fn(params, b, labels, index, 0)

    def loss_of(p):
        return fn(p, b, labels, index, 0)[0]

    probe(loss_of, params, grads, rng, count=3)


def test_distill_end_to_end_moves_the_student_toward_the_teacher():
    rng = np.random.default_rng(3)
    teacher = {k: v * 10 if k.endswith(".weight") and "LayerNorm" not in k else v
               for k, v in init_params(TEACHER, rng, np.float64).items()}
    ids = [[2, *rng.integers(5, 30, int(rng.integers(2, 8))).tolist(), 3] for _ in range(24)]
    types = [[0] * len(r) for r in ids]
    labels = np.zeros(24, np.int64)
    sched = T.Schedule(epochs=6, batch_size=8, lr=3e-3, warmup=0.0, schedule="constant")
    _, init = T.select_layers(TEACHER, teacher, LAYER_MAP)
    b = pad(ids, types, 0)

    def stage1(p):
        s = forward(p, STUDENT, b.input_ids, b.token_type_ids, b.attention_mask)
        t = forward(teacher, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
        return D.stage1_terms(s, t, b.attention_mask, LAYER_MAP)[0]

    out = D.distill(TEACHER, teacher, STUDENT, LAYER_MAP, glue.TASKS["SST-2"], ids, types, labels, sched, None)
    assert stage1(out) < 0.7 * stage1(init)
    with pytest.raises(ValueError, match="layer map"):
        D.distill(TEACHER, teacher, STUDENT, [0], glue.TASKS["SST-2"], ids, types, labels, sched, None)


def test_a_longer_stage1_continues_the_shorter_one_and_stage2_lives_under_its_stage1(tmp_path):
    """BERT-DISTILL-RUN: stage 1 of 6 epochs after one of 3 (same constant rate) equals 6 epochs
    run at once; each stage 2 sits under the stage 1 it continues; a warmup schedule never continues."""
    rng = np.random.default_rng(4)
    teacher = init_params(TEACHER, rng, np.float64)
    ids = [[2, *rng.integers(5, 30, int(rng.integers(2, 8))).tolist(), 3] for _ in range(24)]
    types = [[0] * len(r) for r in ids]
    labels = np.zeros(24, np.int64)
    s1 = lambda e: T.Schedule(epochs=e, batch_size=8, lr=3e-3, warmup=0.0, schedule="constant")  # noqa: E731
    s2 = T.Schedule(epochs=1, batch_size=8, lr=1e-3, warmup=0.1, schedule="linear")
    args = (TEACHER, teacher, STUDENT, LAYER_MAP, glue.TASKS["SST-2"], ids, types, labels)
    D.distill(*args, s1(3), s2, run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "stage1-e3-lr0.003" / "stage2-e1-lr0.001" / T.CHECKPOINT).exists()
    said: list[str] = []
    longer = D.distill(*args, s1(6), None, run_dir=tmp_path / "run", log=said.append)
    assert any("continuing the 3-epoch run" in m for m in said) and any("at step 9/18" in m for m in said)
    at_once = D.distill(*args, s1(6), None, run_dir=tmp_path / "other")
    for k in at_once:
        np.testing.assert_array_equal(longer[k], at_once[k], err_msg=k)
    assert T.continues(asdict(s1(3)), s1(6)) and not T.continues(asdict(s2), replace(s2, epochs=2))
    assert not T.continues(asdict(s1(3)), replace(s1(6), lr=1e-3))


def test_stage1_on_probabilities_gradient_matches_finite_differences():
    """BERT-STAGE1-PROBS: the probabilities' distance, taken back through 2Quad-freeDiv to the scores."""
    rng = np.random.default_rng(4)
    teacher, student = teacher_and_student(rng)
    b = batch()
    fn = D.stage1_loss(STUDENT, TEACHER, teacher, LAYER_MAP, "probs")
    loss, grads = fn(student, b, np.zeros(3, np.int64), np.arange(3), 0)
    assert loss > 0
    assert loss != D.stage1_loss(STUDENT, TEACHER, teacher, LAYER_MAP)(student, b, np.zeros(3, np.int64),
                                                                     np.arange(3), 0)[0]

    def loss_of(p):
        return fn(p, b, np.zeros(3, np.int64), np.arange(3), 0)[0]

    probe(loss_of, student, grads, rng)


def test_stage1_on_hidden_states_only_is_the_score_loss_without_its_attention_terms():
    """BERT-STAGE1-HIDDEN: the hidden-state MSEs of the score target, no gradient on any score."""
    rng = np.random.default_rng(7)
    teacher, student = teacher_and_student(rng)
    b = batch()
    args = (b.input_ids, b.token_type_ids, b.attention_mask)
    t, s = forward(teacher, TEACHER, *args), forward(student, STUDENT, *args)
    loss_h, dh_h, ds_h = D.stage1_terms(s, t, b.attention_mask, LAYER_MAP, target="hidden")
    loss_s, dh_s, ds_s = D.stage1_terms(s, t, b.attention_mask, LAYER_MAP, target="scores")
    m_pair = (b.attention_mask[:, :, None] * b.attention_mask[:, None, :])[:, None].astype(np.float64)
    score_terms = sum(T.mse(s.attention_scores[i], t.attention_scores[j], m_pair)[0] for i, j in enumerate(LAYER_MAP))
    assert score_terms > 0 and loss_h == pytest.approx(loss_s - score_terms, rel=1e-12)
    assert all(d is None for d in ds_h) and len(ds_h) == len(LAYER_MAP)
    for a, c in zip(dh_h, dh_s):
        np.testing.assert_array_equal(a, c)
    fn = D.stage1_loss(STUDENT, TEACHER, teacher, LAYER_MAP, "hidden")
    loss, grads = fn(student, b, np.zeros(3, np.int64), np.arange(3), 0)
    assert loss == pytest.approx(loss_h, rel=1e-12)
    probe(lambda p: fn(p, b, np.zeros(3, np.int64), np.arange(3), 0)[0], student, grads, rng)


def test_attention_distance_against_a_loop_and_its_range():
    """Sum over real keys, mean over real (batch, head, query) rows; two distributions lie in [0, 2]."""
    rng = np.random.default_rng(5)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float64)
    m_pair = (mask[:, :, None] * mask[:, None, :])[:, None]
    p, q = (rng.dirichlet(np.ones(4), size=(2, 3, 4)) for _ in range(2))
    loss, grad = ours.attention_distance(p, q, m_pair)
    total, rows = 0.0, 0
    for bi in range(2):
        n = int(mask[bi].sum())
        for h in range(3):
            for i in range(n):
                total += sum((p[bi, h, i, k] - q[bi, h, i, k]) ** 2 for k in range(n))
                rows += 1
    assert loss == pytest.approx(total / rows, rel=1e-12)
    assert np.all(grad[0, :, 3] == 0) and np.all(grad[1, :, :, 2:] == 0)  # padding carries no gradient
    one_hot = np.zeros((1, 1, 2, 2))
    one_hot[..., 0] = 1.0
    assert ours.attention_distance(one_hot, one_hot[..., ::-1].copy(), np.ones((1, 1, 2, 2)))[0] == pytest.approx(2.0)


def test_stage1_on_probabilities_is_zero_for_the_teacher_itself_and_refuses_bad_targets():
    rng = np.random.default_rng(6)
    teacher = init_params(TEACHER, rng, np.float64)
    b = batch()
    res = forward(teacher, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
    loss, dh, ds = D.stage1_terms(res, res, b.attention_mask, [0, 1, 2], target="probs", config=TEACHER)
    assert loss == 0.0 and all(np.all(d == 0) for d in dh + ds)
    with pytest.raises(ValueError, match="student's config"):
        D.stage1_terms(res, res, b.attention_mask, [0, 1, 2], target="probs")
    with pytest.raises(ValueError, match="unknown stage-1 target 'logits'"):
        D.stage1_terms(res, res, b.attention_mask, [0, 1, 2], target="logits")


def test_scale_queries_scales_each_heads_scores_and_nothing_else():
    """BERT-SCORE-INIT: query weights and bias of head j times alpha[l, j] give scores alpha s; nothing else moves."""
    rng = np.random.default_rng(7)
    params = init_params(TEACHER, rng, np.float64)
    alpha = rng.uniform(0.5, 3.0, (TEACHER.num_hidden_layers, TEACHER.num_attention_heads))
    b = batch()
    ref = forward(params, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
    scaled = ours.scale_queries(TEACHER, params, alpha)
    first = forward(scaled, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
    np.testing.assert_allclose(first.attention_scores[0], alpha[0][None, :, None, None] * ref.attention_scores[0],
                               rtol=1e-12, atol=1e-12)
    assert set(scaled) == set(params)
    assert all(scaled[k] is params[k] for k in params if ".attention.self.query." not in k)
    with pytest.raises(ValueError, match=r"expected \(layers, heads\) = \(3, 2\)"):
        ours.scale_queries(TEACHER, params, alpha[:2])


def test_score_scale_fit_picks_the_grid_point_a_loop_finds_closest():
    """Against a schoolbook search: per layer and head, the alpha whose 2Quad rows lie closest to the softmax rows.

    (For small scores (alpha s + 5)^2 / sum ~ (1 + 0.4 alpha s) / n against softmax's (1 + s) / n:
    alpha = 2.5, so weights that give varied picks are large ones.)
    """
    rng = np.random.default_rng(9)
    params = {k: v * 15 if k.endswith(".weight") and "LayerNorm" not in k else v
              for k, v in init_params(TEACHER, rng, np.float64).items()}
    b = batch()
    ids = [[2, 7, 9, 11, 3], [2, 5, 3], [2, 8, 8, 3]]
    types = [[0] * len(r) for r in ids]
    grid = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    got = ours.score_scale_fit(TEACHER, params, ids, types, "2quad", grid=grid)
    res = forward(params, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
    for layer in range(TEACHER.num_hidden_layers):
        for head in range(TEACHER.num_attention_heads):
            dist = []
            for alpha in grid:
                total = 0.0
                for row in range(3):
                    n = len(ids[row])
                    s = res.attention_scores[layer][row, head, :n, :n]
                    p = np.exp(s - s.max(axis=1, keepdims=True))
                    p /= p.sum(axis=1, keepdims=True)
                    q = (alpha * s + 5.0) ** 2
                    q /= q.sum(axis=1, keepdims=True)
                    total += float(((q - p) ** 2).sum())
                dist.append(total)
            assert got[layer, head] == grid[int(np.argmin(dist))]
    assert len(set(got.ravel().tolist())) > 1  # the search is not degenerate here
    with pytest.raises(ValueError, match="softmax model"):
        ours.score_scale_fit(STUDENT, params, ids, types, "2quad")


def test_stage1_score_target_follows_the_scales_of_the_start():
    """With score_scales, the student started from scale_queries has zero score error against the scaled teacher."""
    rng = np.random.default_rng(9)
    teacher = {k: v * 10 if k.endswith(".weight") and "LayerNorm" not in k else v
               for k, v in init_params(TEACHER, rng, np.float64).items()}
    alpha = rng.uniform(0.5, 3.0, (TEACHER.num_hidden_layers, TEACHER.num_attention_heads))
    b = batch()
    t = forward(teacher, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
    start = ours.scale_queries(TEACHER, teacher, alpha)
    s = forward(start, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
    # layer 0 differs only in its scores; compare the score terms of one layer with a one-layer map
    _, _, ds = D.stage1_terms(s, t, b.attention_mask, [0, 1, 2], score_scales=alpha)
    assert np.abs(ds[0]).max() < 1e-9 * np.abs(t.attention_scores[0]).max()
    _, _, ds_plain = D.stage1_terms(s, t, b.attention_mask, [0, 1, 2])
    assert np.abs(ds_plain[0]).max() > 1e-3 * np.abs(t.attention_scores[0]).max()


def test_softmax_share_slides_linearly_from_one_to_zero():
    """BERT-ANNEAL: w(t) = max(0, 1 - t / T); no annealing (T = 0) is w = 0 throughout."""
    assert [ours.softmax_share(t, 4) for t in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert ours.softmax_share(0, 0) == ours.softmax_share(9, 0) == 0.0


def test_annealed_stage1_starts_at_softmax_ends_at_the_variant_and_its_gradient_is_exact():
    """BERT-ANNEAL: stage 1 at step 0 is the softmax student's loss, at step >= T the variant's,
    in between a loss whose gradient equals central differences."""
    rng = np.random.default_rng(11)
    teacher, student = teacher_and_student(rng)
    b = batch()
    zeros, index = np.zeros(3, np.int64), np.arange(3)
    annealed = D.stage1_loss(STUDENT, TEACHER, teacher, LAYER_MAP, anneal_steps=4)
    as_softmax = D.stage1_loss(STUDENT.replace(attention="softmax"), TEACHER, teacher, LAYER_MAP)
    plain = D.stage1_loss(STUDENT, TEACHER, teacher, LAYER_MAP)
    assert annealed(student, b, zeros, index, 0)[0] == pytest.approx(as_softmax(student, b, zeros, index, 0)[0], rel=1e-12)
    assert annealed(student, b, zeros, index, 4)[0] == pytest.approx(plain(student, b, zeros, index, 4)[0], rel=1e-12)
    ends = {as_softmax(student, b, zeros, index, 0)[0], plain(student, b, zeros, index, 0)[0]}
    loss, grads = annealed(student, b, zeros, index, 1)
    assert len(ends) == 2 and loss not in ends
    probe(lambda p: annealed(p, b, zeros, index, 1)[0], student, grads, rng)


def test_distill_refuses_annealing_outside_stage1_a_softmax_student_and_the_probs_target():
    """BERT-ANNEAL: clear errors for what annealing cannot mean."""
    rng = np.random.default_rng(0)
    teacher, _ = teacher_and_student(rng)
    ids = [[2, 7, 9, 3], [2, 5, 3]]
    types = [[0] * len(r) for r in ids]
    s1 = T.Schedule(epochs=1.0, lr=1e-4, batch_size=2, schedule="constant", warmup=0.0)
    args = (TEACHER, teacher)
    tail = (LAYER_MAP, glue.TASKS["SST-2"], ids, types, np.zeros(2, np.int64), s1, None)
    with pytest.raises(ValueError, match=r"0 < anneal_epochs <= the stage-1 epochs \(1.0\), got 2"):
        D.distill(*args, STUDENT, *tail, anneal_epochs=2.0)
    with pytest.raises(ValueError, match="this student's attention is softmax already"):
        D.distill(*args, STUDENT.replace(attention="softmax"), *tail, anneal_epochs=0.5)
    with pytest.raises(ValueError, match="'probs' .* does not combine with anneal_epochs"):
        D.distill(*args, STUDENT, *tail, stage1_target="probs", anneal_epochs=0.5)
