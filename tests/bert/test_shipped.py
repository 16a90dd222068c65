"""The shipped small SST-2 models (spec BERT-SHIPPED)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.bert import shipped
from refimpl.bert.model import param_shapes
from refimpl.cli import main


@pytest.mark.parametrize("name", shipped.NAMES)
def test_shipped_model_loads_is_small_and_reproduces_its_recorded_logits(name):
    if not shipped.available(name):
        pytest.skip(f"{name} not built (refimpl ship)")
    d = shipped.model_dir(name)
    assert (d / "model.safetensors").stat().st_size <= shipped.MAX_BYTES
    m = shipped.load(name)
    assert m.name == name
    assert set(m.params) == set(param_shapes(m.config, head=True))
    assert all(v.dtype == np.float32 for v in m.params.values())
    assert m.config.vocab_size == m.tokenizer.vocab_size
    assert m.config.pooling == "cls" and m.config.num_labels == 2
    if name == "sst2-small-2quad-freediv-quad":
        assert (m.config.attention, m.config.activation) == ("2quad-freediv", "quad")
        a, b = m.config.freediv
        assert a == m.meta["freediv_fit"]["a"] and b == m.meta["freediv_fit"]["b"]
    else:
        assert (m.config.attention, m.config.activation) == ("softmax", "gelu")
    assert m.meta["fixture_logits"]
    for sentence, logits in m.meta["fixture_logits"]:
        np.testing.assert_allclose(shipped.predict(m, sentence), logits, rtol=1e-4, atol=1e-4)
    assert 0.5 <= m.meta["dev_accuracy"] <= 1.0


def test_encode_is_cls_pieces_sep_and_tokenizes_like_minilm():
    name = shipped.NAMES[0]
    if not shipped.available(name):
        pytest.skip(f"{name} not built (refimpl ship)")
    m = shipped.load(name)
    ids, mask = shipped.encode(m, "a gorgeous , witty , seductive movie .")
    assert ids.dtype == np.int64 and mask.tolist() == [1] * len(ids)
    tok = m.tokenizer
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    words = [tok.wordpiece.id_to_token(int(i)) for i in ids[1:-1]]
    assert words == ["a", "gorgeous", ",", "witty", ",", "seductive", "movie", "."]
    ids, _ = shipped.encode(m, "word " * 300, max_length=16)
    assert len(ids) == 16
    with pytest.raises(TypeError):
        shipped.encode(m, 3)  # type: ignore[arg-type]


def test_unknown_and_missing_models_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown shipped model"):
        shipped.load("bert-large")
    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path)
    assert not shipped.available(shipped.NAMES[0])
    with pytest.raises(FileNotFoundError, match="refimpl ship"):
        shipped.load(shipped.NAMES[0])


def test_meta_names_its_provenance():
    for name in shipped.NAMES:
        if not shipped.available(name):
            pytest.skip(f"{name} not built (refimpl ship)")
        meta = json.loads((shipped.model_dir(name) / "meta.json").read_text())
        for key in ("command", "seed", "teacher", "layer_map", "training", "dev_accuracy"):
            assert key in meta, (name, key)


def test_accuracy_table_reads_result_files(tmp_path):
    from refimpl.reproduce import accuracy

    def put(row, mode, task, seed, value):
        path = accuracy.result_path(row, mode, task, seed, tmp_path)
        path.write_text(json.dumps({"row": row, "mode": mode, "task": task, "seed": seed, "value": value}))

    put("teacher", "fine-tuned", "SST-2", 0, 0.9)
    put("2quad-freediv-quad", "distilled", "RTE", 0, 0.60)
    put("2quad-freediv-quad", "distilled", "RTE", 1, 0.64)
    lines = accuracy.table(tmp_path).splitlines()
    teacher = next(x for x in lines if x.startswith("| teacher |"))
    assert "| 90.0 |" in teacher and "93.1" in teacher
    row = next(x for x in lines if x.startswith("| 2quad-freediv-quad | distilled |"))
    assert "62.0 ± 2.0 (2 seeds)" in row and "freeDiv 91.6/89.0/61.4" in row
    assert accuracy.result_path("teacher", "x", "RTE", 3, tmp_path).name == "teacher_RTE_s3.json"


def test_ship_writes_its_teacher_record_apart_from_the_tables_teacher(tmp_path, monkeypatch):
    """`refimpl ship` hands train_teacher its own result name, so it never overwrites
    results/accuracy/teacher_SST-2.json (the accuracy table's teacher, which the distilled rows read)."""
    from refimpl.bert import glue
    from refimpl.reproduce import accuracy

    seen: dict = {}

    class Stop(Exception):
        pass

    def fake_train_teacher(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(accuracy, "train_teacher", fake_train_teacher)
    monkeypatch.setattr(glue, "load", lambda *a, **k: None)
    with pytest.raises(Stop):
        main(["ship", "--glue-dir", str(tmp_path), "--run-dir", str(tmp_path / "runs"), "--results", str(tmp_path)])
    assert seen["result_name"] == shipped.TEACHER_RESULT == "teacher-shipped_SST-2.json"
    assert seen["result_name"] != accuracy.result_path("teacher", "fine-tuned", "SST-2", 0, tmp_path).name
    assert "shipped" in seen["note"]


def test_ship_checkpoints_are_keyed_by_teacher_and_data(tmp_path, monkeypatch):
    """A new teacher (or another small-model subset) never resumes the previous small model's checkpoint."""
    from types import SimpleNamespace

    from refimpl.bert import distill, glue, train
    from refimpl.reproduce import accuracy

    class Stop(Exception):
        pass

    teacher_run = {"name": "accuracy-teacher-SST-2-s0"}
    tok = SimpleNamespace(wordpiece=SimpleNamespace(id_to_token=str), vocab_size=3, pad_id=0)
    subsets = []

    def fake_train_teacher(*a, subset, **k):
        subsets.append(subset)
        return SimpleNamespace(num_hidden_layers=6), None, tok, {"run": teacher_run["name"], "value": 0.9}

    monkeypatch.setattr(accuracy, "train_teacher", fake_train_teacher)
    class Rows(list):
        def subset(self, index):
            return SimpleNamespace(labels=None)

    monkeypatch.setattr(glue, "load", lambda *a, **k: Rows(range(10)))
    monkeypatch.setattr(train, "select_layers", lambda *a: (None, None))
    monkeypatch.setattr(train, "subset_index", lambda *a: None)
    monkeypatch.setattr(train, "encoded", lambda *a: ([], []))
    dirs = []

    def fake_distill(*args, run_dir, **kwargs):
        dirs.append(run_dir)
        raise Stop

    monkeypatch.setattr(distill, "distill", fake_distill)
    argv = ["ship", "--glue-dir", str(tmp_path), "--run-dir", str(tmp_path / "runs"), "--results", str(tmp_path)]
    for name, extra in (("accuracy-teacher-SST-2-s0", []), ("accuracy-teacher-SST-2-s0-nall-e1", []),
                        ("accuracy-teacher-SST-2-s0-nall-e1", ["--small-subset", "0", "--teacher-subset", "0"])):
        teacher_run["name"] = name
        with pytest.raises(Stop):
            main(argv + extra)
    assert len(set(dirs)) == 3
    assert all(d.is_relative_to(tmp_path / "runs" / "ship") for d in dirs)
    assert "accuracy-teacher-SST-2-s0-nall-e1" in dirs[1].parts
    assert dirs[2].name.endswith("-nall") and subsets == [8000, 8000, None]  # 0: the whole training set
    with pytest.raises(SystemExit):
        main(argv + ["--small-subset", "-1"])
