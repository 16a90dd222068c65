"""quad_init: a Quad student refitted to its GELU teacher's FFN units (ours; ours.quad_init)."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.bert import distill as D
from refimpl.bert import ours
from refimpl.bert import functional as F
from refimpl.bert import glue
from refimpl.bert import train as T
from refimpl.bert.config import BertConfig
from refimpl.bert.layers import linear
from refimpl.bert.model import forward, init_params
from refimpl.bert.tokenizer import pad

TEACHER = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=24, max_position_embeddings=32, num_labels=1)


def teacher_and_rows(seed: int = 0):
    """A teacher whose FFN pre-activations spread over about [-5, 3], as MiniLM's do, and 32 rows."""
    rng = np.random.default_rng(seed)
    params = init_params(TEACHER, rng, np.float64)
    for k in list(params):
        if k.endswith(".weight") and "LayerNorm" not in k:
            params[k] = params[k] * 10
        if k.endswith("intermediate.dense.weight"):
            params[k] = params[k] * 5
        if k.endswith("intermediate.dense.bias"):
            params[k] = params[k] - 1.5  # mostly negative, where Quad and GELU part most
    ids = [[2, *rng.integers(5, 40, int(rng.integers(3, 14))).tolist(), 3] for _ in range(32)]
    types = [[0] * (len(r) // 2) + [1] * (len(r) - len(r) // 2) for r in ids]
    return params, ids, types


def token_cosine(hidden: np.ndarray, mask: np.ndarray) -> float:
    """Mean cosine between distinct real tokens of each row, averaged over rows."""
    out = []
    for h, m in zip(hidden, mask.astype(bool)):
        h = h[m] / np.linalg.norm(h[m], axis=1, keepdims=True)
        n = len(h)
        out.append(((h @ h.T).sum() - n) / (n * (n - 1)))
    return float(np.mean(out))


def test_fit_quadratics_equals_polyfit_per_unit():
    rng = np.random.default_rng(1)
    x = rng.normal(-1.0, 1.5, size=(500, 2, 7))  # [tokens, layers, units]
    g = F.gelu_erf(x)
    mx = np.stack([(x ** k).sum(0) for k in range(5)], axis=1)  # [L, 5, I]
    mg = np.stack([(g * x ** k).sum(0) for k in range(3)], axis=1)  # [L, 3, I]
    a, b, c = ours.fit_quadratics(mx, mg, min_curvature=0.0)
    for layer in range(2):
        for j in range(7):
            ref = np.polyfit(x[:, layer, j], g[:, layer, j], 2)  # highest power first
            np.testing.assert_allclose([a[layer, j], b[layer, j], c[layer, j]], ref, rtol=1e-7, atol=1e-9)
    # the floor keeps |A| >= min_curvature and refits B, C with A fixed
    a2, b2, c2 = ours.fit_quadratics(mx, mg, min_curvature=10.0)
    assert np.all(np.abs(a2) == 10.0)
    j = 3
    ref_bc = np.polyfit(x[:, 0, j], g[:, 0, j] - a2[0, j] * x[:, 0, j] ** 2, 1)
    np.testing.assert_allclose([b2[0, j], c2[0, j]], ref_bc, rtol=1e-7, atol=1e-9)


def test_refitted_quad_ffn_computes_the_fitted_quadratics_exactly():
    params, ids, types = teacher_and_rows()
    mx, mg = ours.gelu_moments(TEACHER, params, ids, types)
    a, b, c = ours.fit_quadratics(mx, mg)
    new = ours.quad_init(TEACHER, params, ids, types)
    x = np.random.default_rng(2).normal(size=(5, 16))
    for layer in range(TEACHER.num_hidden_layers):
        p = f"encoder.layer.{layer}."
        pre = linear(x, params[p + "intermediate.dense.weight"], params[p + "intermediate.dense.bias"])
        want = linear(a[layer] * pre * pre + b[layer] * pre + c[layer], params[p + "output.dense.weight"],
                      params[p + "output.dense.bias"])
        pre2 = linear(x, new[p + "intermediate.dense.weight"], new[p + "intermediate.dense.bias"])
        got = linear(F.quad(pre2), new[p + "output.dense.weight"], new[p + "output.dense.bias"])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
        assert np.array_equal(new[p + "attention.self.query.weight"], params[p + "attention.self.query.weight"])


def test_quad_student_from_quad_init_tracks_the_teacher_where_the_plain_swap_collapses():
    """The plain GELU -> Quad swap pulls a sentence's tokens together and far from the teacher's; quad_init does not."""
    params, ids, types = teacher_and_rows()
    b = pad(ids, types, 0)
    student = TEACHER.replace(activation="quad")
    t = forward(params, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
    plain = forward(params, student, b.input_ids, b.token_type_ids, b.attention_mask)
    fitted = forward(ours.quad_init(TEACHER, params, ids, types), student, b.input_ids, b.token_type_ids,
                     b.attention_mask)
    m = b.attention_mask.astype(bool)

    def rel(res):
        return float(np.linalg.norm((res.hidden_states[-1] - t.hidden_states[-1])[m])
                     / np.linalg.norm(t.hidden_states[-1][m]))

    assert rel(fitted) < 0.5 * rel(plain)
    cos_t = token_cosine(t.hidden_states[-1], b.attention_mask)
    assert abs(token_cosine(fitted.hidden_states[-1], b.attention_mask) - cos_t) < abs(
        token_cosine(plain.hidden_states[-1], b.attention_mask) - cos_t)


def test_distill_with_quad_init_starts_closer_and_checks_the_activations():
    params, ids, types = teacher_and_rows(3)
    student = TEACHER.replace(attention="2quad-freediv", activation="quad", freediv_a=2.0, freediv_b=0.5)
    labels = np.linspace(0.0, 5.0, len(ids))
    sched = T.Schedule(epochs=1, batch_size=8, lr=0.0, warmup=0.0, schedule="constant")  # lr 0: the start itself
    b = pad(ids, types, 0)

    def stage1(p):
        s = forward(p, student, b.input_ids, b.token_type_ids, b.attention_mask)
        t = forward(params, TEACHER, b.input_ids, b.token_type_ids, b.attention_mask)
        return D.stage1_terms(s, t, b.attention_mask, [0, 1])[0]

    task = glue.TASKS["STS-B"]
    plain = D.distill(TEACHER, params, student, [0, 1], task, ids, types, labels, sched, None)
    fitted = D.distill(TEACHER, params, student, [0, 1], task, ids, types, labels, sched, None, quad_init_rows=16)
    assert stage1(fitted) < stage1(plain)
    with pytest.raises(ValueError, match="GELU to Quad"):
        D.distill(TEACHER, params, student.replace(activation="relu"), [0, 1], task, ids, types, labels, sched,
                  None, quad_init_rows=16)


def test_accuracy_rows_with_quad_init_get_their_own_runs_and_table_mark(tmp_path):
    import json
    from pathlib import Path

    from refimpl.reproduce import accuracy as A

    t = "accuracy-teacher-STS-B-s0-nall-e2-lr0.0001"
    for mode in ("direct", "distilled"):
        args = (Path("/r"), "2quad-freediv-quad", mode, "STS-B", 0, None, 2.0, 1e-4, t)
        plain = A.student_run(*args, fits_on_teacher=True)
        fitted = A.student_run(*args, fits_on_teacher=True, quad_init=256)
        assert fitted.name == plain.name + "-qinit256"
    kw = dict(seed=0, subset=None, epochs=1.0, stage1_epochs=1.0, stage2_epochs=1.0, runs=tmp_path, argv=["x"],
              root=tmp_path)
    for row in ("teacher", "2relu-relu"):  # no Quad units to refit: refused before any data is read
        with pytest.raises(ValueError, match="refits Quad units"):
            A.run_one(row, "distilled", "STS-B", str(tmp_path / "absent"), quad_init=16, **kw)
    rec = {"row": "2quad-freediv-quad", "mode": "distilled", "task": "STS-B", "seed": 0, "value": 0.5,
           "stage1": {"epochs": 1.0}, "stage2": {"epochs": 1.0}}
    qpath = A.result_path("2quad-freediv-quad", "distilled", "STS-B", 0, tmp_path, quad_init=True)
    assert qpath.name == "2quad-freediv-quad-distilled-qinit_STS-B.json"  # never overwrites the plain recipe's record
    qpath.write_text(json.dumps(dict(rec, value=0.7, quad_init={"rows": 256})))
    A.result_path("2quad-freediv-quad", "distilled", "STS-B", 0, tmp_path).write_text(json.dumps(rec))
    lines = A.table(tmp_path).splitlines()
    plain = next(x for x in lines if x.startswith("| 2quad-freediv-quad | distilled |"))
    fitted = next(x for x in lines if x.startswith("| 2quad-freediv-quad | distilled, quad-init |"))
    assert "| 50.0 |" in plain and "| 70.0 |" in fitted and "STS-B 1+1" in fitted and "freeDiv 91.6" in fitted
    assert not any(x.startswith("| 2quad-quad | distilled, quad-init") for x in lines)  # rows only where records are


def test_swap_pairs_appends_each_pair_in_the_other_order():
    task = glue.TASKS["STS-B"]
    ex = glue.Examples(task, ["a one", "b two"], ["c three", "d four"], np.array([1.0, 4.5]))
    sw = ours.swap_pairs(ex)
    assert sw.text_a == ["a one", "b two", "c three", "d four"]
    assert sw.text_b == ["c three", "d four", "a one", "b two"]
    np.testing.assert_array_equal(sw.labels, [1.0, 4.5, 1.0, 4.5])
    with pytest.raises(ValueError, match="single sentences"):
        ours.swap_pairs(glue.Examples(glue.TASKS["SST-2"], ["x"], None, np.array([1])))


def test_stage1_runs_on_the_given_inputs_and_stage2_on_the_labelled_set():
    params, ids, types = teacher_and_rows(4)
    student = TEACHER.replace(attention="2quad-freediv", activation="quad", freediv_a=2.0, freediv_b=0.5)
    labels = np.linspace(0.0, 5.0, len(ids))
    task = glue.TASKS["STS-B"]
    s1 = T.Schedule(epochs=1, batch_size=8, lr=1e-3, warmup=0.0, schedule="constant")
    same = D.distill(TEACHER, params, student, [0, 1], task, ids, types, labels, s1, None)
    given = D.distill(TEACHER, params, student, [0, 1], task, ids, types, labels, s1, None,
                      stage1_inputs=(ids, types))
    for k in same:  # the default inputs are (ids, types) themselves
        np.testing.assert_array_equal(same[k], given[k])
    cut = len(ids) // 2  # half the rows in the other order: another stage 1
    other = D.distill(TEACHER, params, student, [0, 1], task, ids, types, labels, s1, None,
                      stage1_inputs=(ids[:cut] + ids[:cut][::-1], types[:cut] + types[:cut][::-1]))
    assert any(not np.array_equal(same[k], other[k]) for k in same)
    with pytest.raises(ValueError, match="token rows"):
        D.distill(TEACHER, params, student, [0, 1], task, ids, types, labels, s1, None,
                  stage1_inputs=(ids, types[:-1]))


def test_replace_tokens_keeps_the_rows_and_adds_noisy_copies_of_them():
    rng = np.random.default_rng(5)
    ids = [[2, *rng.integers(5, 60, int(rng.integers(20, 60))).tolist(), 3] for _ in range(200)]
    types = [[0] * len(r) for r in ids]
    keep = [0, 1, 2, 3]
    out_ids, out_types = ours.replace_tokens(ids, types, copies=3, rate=0.2, seed=0, keep=keep)
    assert len(out_ids) == 4 * len(ids) and out_ids[: len(ids)] == ids and out_types == types * 4
    used = {t for r in ids for t in r if t not in keep}
    changed = total = 0
    for c in range(1, 4):
        for row, noisy in zip(ids, out_ids[c * len(ids): (c + 1) * len(ids)]):
            assert len(noisy) == len(row) and noisy[0] == 2 and noisy[-1] == 3  # specials stay
            assert set(noisy[1:-1]) <= used  # replacements are word pieces of the rows
            changed += sum(a != b for a, b in zip(row, noisy))
            total += len(row) - 2
    # a draw lands on the same token with probability ~1/55: the changed share is ~0.2 (1 - 1/55)
    assert 0.17 < changed / total < 0.21
    again = ours.replace_tokens(ids, types, copies=3, rate=0.2, seed=0, keep=keep)
    other = ours.replace_tokens(ids, types, copies=3, rate=0.2, seed=1, keep=keep)
    assert again[0] == out_ids and other[0] != out_ids
    with pytest.raises(ValueError, match="copies >= 1"):
        ours.replace_tokens(ids, types, copies=0, rate=0.2, seed=0, keep=keep)
    with pytest.raises(ValueError, match="0 < rate <= 1"):
        ours.replace_tokens(ids, types, copies=1, rate=0.0, seed=0, keep=keep)
    with pytest.raises(ValueError, match="differ"):
        ours.replace_tokens(ids, types[:-1], copies=1, rate=0.2, seed=0, keep=keep)


def test_stage2_runs_on_the_given_inputs_with_the_teachers_logits_and_refuses_a_regression_task():
    params, ids, types = teacher_and_rows(6)
    teacher = TEACHER.replace(num_labels=2)
    params = dict(params, **{"classifier.weight": np.random.default_rng(7).normal(size=(2, 16)),
                             "classifier.bias": np.zeros(2)})
    student = teacher.replace(attention="2quad-freediv", activation="quad", freediv_a=2.0, freediv_b=0.5)
    labels = np.arange(len(ids)) % 2
    task = glue.TASKS["RTE"]
    s2 = T.Schedule(epochs=1, batch_size=8, lr=1e-3, warmup=0.0, schedule="constant")
    same = D.distill(teacher, params, student, [0, 1], task, ids, types, labels, None, s2)
    given = D.distill(teacher, params, student, [0, 1], task, ids, types, labels, None, s2,
                      stage2_inputs=(ids, types))
    for k in same:  # the default inputs are (ids, types), and stage 2 reads the teacher, not the labels
        np.testing.assert_array_equal(same[k], given[k])
    noisy = ours.replace_tokens(ids, types, copies=1, rate=0.5, seed=0, keep=[0, 1, 2, 3])
    other = D.distill(teacher, params, student, [0, 1], task, ids, types, labels, None, s2, stage2_inputs=noisy)
    assert any(not np.array_equal(same[k], other[k]) for k in same)
    with pytest.raises(ValueError, match="labelled rows only"):
        D.distill(TEACHER, teacher_and_rows(6)[0], TEACHER.replace(activation="quad"), [0, 1], glue.TASKS["STS-B"],
                  ids, types, labels.astype(float), None, s2, stage2_inputs=(ids, types))


def test_accuracy_rows_with_swapped_pairs_get_their_own_runs_records_and_table_row(tmp_path):
    import json
    from pathlib import Path

    from refimpl.reproduce import accuracy as A

    args = (Path("/r"), "2quad-freediv-quad", "distilled", "STS-B", 0, None, 2.0, 1e-4,
            "accuracy-teacher-STS-B-s0-nall-e2-lr0.0001")
    plain = A.student_run(*args, fits_on_teacher=True, quad_init=256)
    assert A.student_run(*args, fits_on_teacher=True, quad_init=256, augment="swap").name == plain.name + "-swap"
    kw = dict(seed=0, subset=None, epochs=1.0, stage1_epochs=1.0, stage2_epochs=1.0, runs=tmp_path, argv=["x"],
              root=tmp_path)
    with pytest.raises(ValueError, match="pair task"):  # SST-2 has no pairs: refused before any data is read
        A.run_one("2quad-freediv-quad", "distilled", "SST-2", str(tmp_path / "absent"), augment="swap", **kw)
    for kind in ("swap", "replace"):  # direct rows have no distillation
        with pytest.raises(ValueError, match="distillation of a distilled row"):
            A.run_one("2quad-freediv-quad", "direct", "STS-B", str(tmp_path / "absent"), augment=kind, **kw)
    assert A.student_run(*args, fits_on_teacher=True, quad_init=256, augment="replace").name == plain.name + "-replace"
    with pytest.raises(ValueError, match="got the teacher"):  # the teacher is fine-tuned, it has no stage 1
        A.run_one("teacher", "distilled", "STS-B", str(tmp_path / "absent"), augment="swap", **kw)
    with pytest.raises(ValueError, match="unknown augmentation"):
        A.run_one("2quad-freediv-quad", "distilled", "STS-B", str(tmp_path / "absent"), augment="mlm", **kw)
    path = A.result_path("2quad-freediv-quad", "distilled", "STS-B", 0, tmp_path, quad_init=True, augment="swap")
    assert path.name == "2quad-freediv-quad-distilled-qinit-swap_STS-B.json"
    rec = {"row": "2quad-freediv-quad", "mode": "distilled", "task": "STS-B", "seed": 0, "value": 0.5,
           "stage1": {"epochs": 1.0}, "stage2": {"epochs": 1.0}, "quad_init": {"rows": 256}}
    A.result_path("2quad-freediv-quad", "distilled", "STS-B", 0, tmp_path, quad_init=True).write_text(json.dumps(rec))
    path.write_text(json.dumps(dict(rec, value=0.8, stage1_augment={"kind": "swap"})))
    replaced = A.result_path("2quad-freediv-quad", "distilled", "STS-B", 0, tmp_path, quad_init=True, augment="replace")
    assert replaced.name == "2quad-freediv-quad-distilled-qinit-replace_STS-B.json"
    replaced.write_text(json.dumps(dict(rec, value=0.7, stage1_augment={"kind": "replace"})))
    lines = A.table(tmp_path).splitlines()
    fitted = next(x for x in lines if x.startswith("| 2quad-freediv-quad | distilled, quad-init |"))
    swapped = next(x for x in lines if x.startswith("| 2quad-freediv-quad | distilled, quad-init, swap-pairs stage 1 |"))
    noisy = next(x for x in lines if x.startswith("| 2quad-freediv-quad | distilled, quad-init, token-replaced copies |"))
    assert "| 50.0 |" in fitted and "| 80.0 |" in swapped and "| 70.0 |" in noisy
    assert lines.index(fitted) < lines.index(swapped)


def test_accuracy_distillation_batch_size_gets_its_own_run_and_table_note(tmp_path):
    import json
    from pathlib import Path

    from refimpl.reproduce import accuracy as A

    args = (Path("/r"), "2quad-freediv-quad", "distilled", "RTE", 0, None, 6.0, 5e-5,
            "accuracy-teacher-RTE-s0-nall-e6-lr5e-05")
    plain = A.student_run(*args, fits_on_teacher=True, quad_init=256)
    assert A.student_run(*args, fits_on_teacher=True, quad_init=256, batch_size=32).name == plain.name
    assert A.student_run(*args, fits_on_teacher=True, quad_init=256, batch_size=8).name == plain.name + "-b8"
    kw = dict(seed=0, subset=None, epochs=1.0, stage1_epochs=1.0, stage2_epochs=1.0, runs=tmp_path, argv=["x"],
              root=tmp_path)
    for row, mode in (("teacher", "distilled"), ("2quad-freediv-quad", "direct")):
        with pytest.raises(ValueError, match="distillation batch"):
            A.run_one(row, mode, "RTE", str(tmp_path / "absent"), batch_size=8, **kw)
    with pytest.raises(ValueError, match="positive"):
        A.run_one("2quad-freediv-quad", "distilled", "RTE", str(tmp_path / "absent"), batch_size=0, **kw)
    rec = {"row": "2quad-freediv-quad", "mode": "distilled", "task": "RTE", "seed": 0, "value": 0.6,
           "stage1": {"epochs": 16.0, "batch_size": 8}, "stage2": {"epochs": 4.0, "batch_size": 8}}
    A.result_path("2quad-freediv-quad", "distilled", "RTE", 0, tmp_path).write_text(json.dumps(rec))
    line = next(x for x in A.table(tmp_path).splitlines() if x.startswith("| 2quad-freediv-quad | distilled |"))
    assert "RTE 16+4 (batch 8)" in line and "stage 2 at" not in line
    rec["stage2"]["lr"] = 2e-5  # a stage-2 rate other than MPCFormer's is stated too
    A.result_path("2quad-freediv-quad", "distilled", "RTE", 0, tmp_path).write_text(json.dumps(rec))
    line = next(x for x in A.table(tmp_path).splitlines() if x.startswith("| 2quad-freediv-quad | distilled |"))
    assert "RTE 16+4 (batch 8) (stage 2 at 2e-05)" in line
    from refimpl.reproduce import accuracy_table

    assert accuracy_table.STAGE2_LR == D.STAGE2_LR


def test_neighbour_candidates_are_the_nearest_pieces_of_the_same_kind_by_cosine():
    rng = np.random.default_rng(11)
    V, d, k = 40, 6, 4
    E = rng.normal(size=(V, d))
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"{'##' if i % 3 == 0 else ''}w{i}" for i in range(4, V)]
    keep = [0, 1, 2, 3]
    near = ours.neighbour_candidates(E * rng.uniform(0.5, 3.0, (V, 1)), pieces, k=k, keep=keep, block=7)
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)  # cosine ignores each row's length
    for t in range(V):
        if t in keep:  # specials are never replaced: their row lists themselves
            assert (near[t] == t).all()
            continue
        same = [u for u in range(4, V) if u != t and pieces[u].startswith("##") == pieces[t].startswith("##")]
        ref = sorted(same, key=lambda u: -float(unit[t] @ unit[u]))[:k]  # schoolbook: sort every candidate
        assert near[t].tolist() == ref
    ids = [[2, *rng.integers(4, V, 30).tolist(), 3] for _ in range(50)]
    types = [[0] * len(r) for r in ids]
    out, _ = ours.replace_tokens(ids, types, copies=2, rate=0.5, seed=0, keep=keep, candidates=near)
    hits = 0
    for row, noisy in zip(ids * 2, out[len(ids):]):
        for a, b in zip(row, noisy):
            assert b == a or b in near[a]  # a replacement is one of the token's own candidates
            hits += b != a
    assert 0.4 < hits / (2 * 50 * 30) < 0.6
    with pytest.raises(ValueError, match="1 <= k"):
        ours.neighbour_candidates(E, pieces, k=V, keep=keep)
    with pytest.raises(ValueError, match="pieces"):
        ours.neighbour_candidates(E, pieces[:-1], k=k, keep=keep)
    with pytest.raises(ValueError, match="candidates must be"):
        ours.replace_tokens(ids, types, copies=1, rate=0.5, seed=0, keep=keep, candidates=near[:10])
