"""Two-stage distillation of an MPC-friendly student from its teacher (the command: `refimpl distill`).

MPCFormer (Li et al., ICLR 2023, §3.2), as DESIGN.md section 6 fixes it:
- the student starts from the teacher's weights with attention and activation swapped (and,
  for a smaller student, a stated layer map: student layer i <- teacher layer map[i]);
- stage 1: MSE on the pre-softmax attention scores of every layer + MSE on every hidden
  state (embedding output included), weighted 1:1; student layer i is matched to teacher
  layer map[i] (hidden state i + 1 to teacher hidden state map[i] + 1; hidden state 0 to 0);
  lr 5e-5 constant;
- stage 2: soft cross-entropy at T = 1 on the logits (STS-B: MSE to the gold labels),
  lr 1e-5, 10 % warmup then linear decay.
The MSEs average over real tokens only (real query x real key for the scores): the scores of
padded positions are not part of any sentence.

Our additions (not in MPCFormer) live in refimpl/bert/ours.py and are reached from here only
through explicit options of `distill`: quad_init_rows (ours.quad_init), score_scales
(ours.scale_queries), stage1_target "probs" / "hidden" (ours.attention_distance), anneal_epochs
(ours.softmax_share) and stage-1/2 inputs made by ours.swap_pairs / ours.replace_tokens.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from refimpl.bert import glue
from refimpl.bert import layers as L
from refimpl.bert import ours
from refimpl.bert import train as T
from refimpl.bert.config import BertConfig
from refimpl.bert.model import ForwardResult, Params, backward, forward
from refimpl.bert.tokenizer import Batch

STAGE1_LR = 5e-5  # MPCFormer's stage-1 learning rate (constant)
STAGE2_LR = 1e-5  # MPCFormer's stage-2 peak learning rate (10 % warmup, linear decay)
STAGE1_TARGETS = {"scores": "pre-softmax attention scores (MPCFormer)",
                  "probs": "attention probabilities (ours)",
                  "hidden": "no attention term: hidden states only (ours)"}


def stage1_terms(
    student: ForwardResult, teacher: ForwardResult, mask: np.ndarray, layer_map: Sequence[int],
    *, target: str = "scores", config: BertConfig | None = None, score_scales: np.ndarray | None = None,
) -> tuple[float, list[np.ndarray], list[np.ndarray | None]]:
    """Loss = sum_l MSE(scores_l) + sum_i MSE(hidden_i) and the gradients on the student's scores and hidden states (MPCFormer stage 1).

    mask [B, n] 0/1; layer_map[i] = teacher layer of student layer i. target "probs" (ours; needs
    the student's config): sum_l attention_distance(probs_l) in place of the score MSEs, its
    gradient taken back to the scores through the student's attention variant. target "hidden"
    (ours): the hidden-state MSEs alone, the scores left free (a 2Quad row of the teacher's scores
    is far from its softmax row, so pinning them need not help). score_scales
    [teacher layers, h] (ours, a start from scale_queries): the score target of teacher layer t, head
    j is alpha[t, j] times the teacher's score, the scale the student starts from.
    Returns (loss, d_hidden_states [L+1], d_attention_scores [L]).
    """
    if target not in STAGE1_TARGETS:
        raise ValueError(f"unknown stage-1 target {target!r}; expected one of {sorted(STAGE1_TARGETS)}")
    if target == "probs" and config is None:
        raise ValueError("stage-1 target 'probs' takes the probabilities back to the scores: give the student's config")
    dtype = student.hidden_states[0].dtype
    m = mask.astype(dtype)
    m_tok = m[:, :, None]  # [B, n, 1]
    m_pair = (m[:, :, None] * m[:, None, :])[:, None]  # [B, 1, n, n] real query x real key
    hidden_pairs = [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(layer_map)]
    loss = 0.0
    d_hidden: list[np.ndarray] = []
    for i, t in hidden_pairs:
        li, di = T.mse(student.hidden_states[i], teacher.hidden_states[t].astype(dtype, copy=False), m_tok)
        loss += li
        d_hidden.append(di.astype(dtype, copy=False))
    d_scores: list[np.ndarray | None] = []
    for i, t in enumerate(layer_map):
        if target == "hidden":
            d_scores.append(None)
            continue
        if target == "scores":
            goal = teacher.attention_scores[t]
            if score_scales is not None:
                goal = goal * np.asarray(score_scales[t])[None, :, None, None]
            li, di = T.mse(student.attention_scores[i], goal.astype(dtype, copy=False), m_pair)
        else:
            goal = teacher.attention_probs[t].astype(dtype, copy=False)
            li, dp = ours.attention_distance(student.attention_probs[i], goal, m_pair)
            di = L.attention_probs_backward(dp, student.attention_probs[i], student.attention_scores[i], m[:, None, :],
                                            config.attention, c=config.quad_c, ab=config.freediv)
        loss += li
        d_scores.append(di.astype(dtype, copy=False))
    return loss, d_hidden, d_scores


def _student_rng(dropout: float, seed: int, step: int) -> np.random.Generator | None:
    """The student's dropout masks of one step: a function of (seed, step), so a resumed run is identical."""
    return np.random.default_rng([seed, 11, step]) if dropout > 0 else None


def stage1_loss(config: BertConfig, teacher_config: BertConfig, teacher_params: Params,
                layer_map: Sequence[int], target: str = "scores", score_scales: np.ndarray | None = None,
                dropout: float = 0.0, seed: int = 0, anneal_steps: int = 0) -> T.LossFn:
    """Stage 1 loss function for train(): teacher forward, student forward, MSEs, student backward.

    dropout > 0: BERT's training dropout on the student only, as MPCFormer's task_distill trains
    the student in train mode against the teacher in eval mode. anneal_steps > 0 (ours): the
    student's attention at step t is softmax_share(t) softmax + (1 - softmax_share(t)) its variant,
    so it leaves the teacher's kernel gradually (ours.softmax_share, layers.annealed_probs)."""

    def loss_fn(params: Params, batch: Batch, labels: np.ndarray, index: np.ndarray, step: int) -> tuple[float, Params]:
        args = (batch.input_ids, batch.token_type_ids, batch.attention_mask)
        share = ours.softmax_share(step, anneal_steps)
        t = forward(teacher_params, teacher_config, *args)
        s = forward(params, config, *args, dropout=dropout, rng=_student_rng(dropout, seed, step), softmax_share=share)
        loss, dh, ds = stage1_terms(s, t, batch.attention_mask, layer_map, target=target, config=config,
                                    score_scales=score_scales)
        return loss, backward(params, config, s, None, d_hidden_states=dh, d_attention_scores=ds)

    return loss_fn


def stage2_loss(config: BertConfig, task: glue.Task, teacher_logits: np.ndarray, temperature: float = 1.0,
                dropout: float = 0.0, seed: int = 0) -> T.LossFn:
    """Stage 2 loss for train(): soft CE to the teacher's logits (precomputed per example); STS-B: MSE to gold.

    dropout > 0: on the student, as in stage 1 (the teacher's logits are computed without it)."""

    def loss_fn(params: Params, batch: Batch, labels: np.ndarray, index: np.ndarray, step: int) -> tuple[float, Params]:
        s = forward(params, config, batch.input_ids, batch.token_type_ids, batch.attention_mask,
                    dropout=dropout, rng=_student_rng(dropout, seed, step))
        if task.labels is None:
            loss, d = T.task_loss(task, s.logits, labels)
        else:
            loss, d = T.soft_cross_entropy(s.logits, teacher_logits[index].astype(s.logits.dtype), temperature)
        return loss, backward(params, config, s, d)

    return loss_fn


def distill(
    teacher_config: BertConfig,
    teacher_params: Params,
    student_config: BertConfig,
    layer_map: Sequence[int],
    task: glue.Task,
    ids: list[list[int]],
    types: list[list[int]],
    labels: np.ndarray,
    stage1: T.Schedule | None,
    stage2: T.Schedule | None,
    *,
    pad_id: int = 0,
    run_dir: str | Path | None = None,
    student_params: Params | None = None,
    quad_init_rows: int = 0,
    stage1_inputs: tuple[list[list[int]], list[list[int]]] | None = None,
    stage2_inputs: tuple[list[list[int]], list[list[int]]] | None = None,
    stage1_target: str = "scores",
    score_scales: np.ndarray | None = None,
    anneal_epochs: float = 0.0,
    log=None,
) -> Params:
    """Both stages; the student starts from the teacher's layers by layer_map unless student_params is given.

    quad_init_rows > 0 (ours; a GELU teacher, a Quad student): the start is ours.quad_init of the teacher,
    fitted on that many training rows (a fixed random subset). stage1_inputs: the (token ids,
    type ids) stage 1 runs on instead of (ids, types), e.g. with ours.swap_pairs or ours.replace_tokens;
    quad_init uses (ids, types). stage2_inputs (classification tasks only: stage 2 then fits the
    teacher's logits on them, reading no label): the rows stage 2 runs on instead of (ids, types).
    stage1_target: "scores" (MPCFormer) or "probs" (ours), see stage1_terms. score_scales [L, h]
    (ours): the start's queries scaled per head (ours.scale_queries, after ours.quad_init), e.g. ours.score_scale_fit's;
    the score target of stage 1 is scaled alike. Each stage's schedule.dropout applies to the student
    (0 by default; MPCFormer trains the student with BERT's 0.1). anneal_epochs > 0 (ours): over
    stage 1's first anneal_epochs epochs the student's attention slides from softmax to its
    variant (ours.softmax_share); the rest of stage 1 and all of stage 2 run the variant alone.
    """
    if stage1_target not in STAGE1_TARGETS:
        raise ValueError(f"unknown stage-1 target {stage1_target!r}; expected one of {sorted(STAGE1_TARGETS)}")
    if anneal_epochs:
        if stage1 is None or not 0.0 < anneal_epochs <= stage1.epochs:
            raise ValueError(f"anneal_epochs anneals the attention within stage 1: give 0 < anneal_epochs <= the "
                             f"stage-1 epochs ({None if stage1 is None else stage1.epochs}), got {anneal_epochs}")
        if student_config.attention == "softmax":
            raise ValueError("anneal_epochs slides the attention from softmax to the student's variant; "
                             "this student's attention is softmax already")
        if stage1_target == "probs":
            raise ValueError("stage-1 target 'probs' takes the probabilities back through the variant alone; "
                             "it does not combine with anneal_epochs")
    if student_params is None:
        source = teacher_params
        if quad_init_rows > 0:
            if teacher_config.activation != "gelu" or student_config.activation != "quad":
                raise ValueError(f"quad_init maps GELU to Quad, got {teacher_config.activation!r} -> "
                                 f"{student_config.activation!r}")
            rows = T.subset_index(len(ids), quad_init_rows, 0)
            source = ours.quad_init(teacher_config, teacher_params, [ids[i] for i in rows], [types[i] for i in rows],
                               pad_id=pad_id)
        if score_scales is not None:
            source = ours.scale_queries(teacher_config, source, score_scales)
        _, student_params = T.select_layers(teacher_config, source, layer_map)
    if student_config.num_hidden_layers != len(layer_map):
        raise ValueError(f"student has {student_config.num_hidden_layers} layers, layer map {list(layer_map)}")
    dir1, dir2 = stage_dirs(run_dir, stage1, stage2)
    params = student_params
    if stage1 is not None and dir1 is not None and not dir1.exists():
        _continue_shorter_stage1(dir1, stage1, log)
    if stage1 is not None:
        ids1, types1 = (ids, types) if stage1_inputs is None else stage1_inputs
        if len(ids1) != len(types1):
            raise ValueError(f"stage1_inputs: {len(ids1)} token rows but {len(types1)} type rows")
        labels1 = labels if stage1_inputs is None else np.zeros(len(ids1), labels.dtype)  # stage 1 reads no label
        anneal_steps = int(round(anneal_epochs * T.total_steps(len(ids1), replace(stage1, epochs=1.0))))
        loss1 = stage1_loss(student_config, teacher_config, teacher_params, layer_map, stage1_target, score_scales,
                            dropout=stage1.dropout, seed=stage1.seed, anneal_steps=anneal_steps)
        params = T.train(params, ids1, types1, labels1, loss1, stage1, pad_id=pad_id, run_dir=dir1,
                         desc="distill stage 1", log=log)
    if stage2 is not None:
        ids2, types2, labels2 = ids, types, labels
        if stage2_inputs is not None:
            if task.labels is None:
                raise ValueError(f"stage 2 of {task.name} fits the gold scores: it runs on the labelled rows only")
            ids2, types2 = stage2_inputs
            if len(ids2) != len(types2):
                raise ValueError(f"stage2_inputs: {len(ids2)} token rows but {len(types2)} type rows")
            labels2 = np.zeros(len(ids2), labels.dtype)  # soft CE to the teacher's logits reads no label
        teacher_logits = T.predict(teacher_params, teacher_config, ids2, types2, pad_id=pad_id, progress="teacher logits")
        loss2 = stage2_loss(student_config, task, teacher_logits, dropout=stage2.dropout, seed=stage2.seed)
        params = T.train(params, ids2, types2, labels2, loss2,
                         stage2, pad_id=pad_id, run_dir=dir2, desc="distill stage 2", log=log)
    return params


def _continue_shorter_stage1(dir1: Path, stage1: T.Schedule, log=None) -> None:
    """Start a longer stage 1 from the longest shorter one of the same run (a copy of its checkpoint).

    Stage 1 runs at a constant rate, so its first steps do not depend on the epochs
    (train.continues); the shorter run and the stage 2 runs under it stay as they are.
    """
    best, best_epochs = None, 0.0
    for d in dir1.parent.glob(f"stage1-e*-lr{stage1.lr:g}"):  # _tag's form: same rate, any epochs
        state = d / T.STATE
        if not state.exists():
            continue
        stored = json.loads(state.read_text())["schedule"]
        if stored["epochs"] < stage1.epochs and stored["epochs"] > best_epochs and T.continues(stored, stage1):
            best, best_epochs = d, stored["epochs"]
    if best is None:
        return
    dir1.mkdir(parents=True)
    for name in (T.CHECKPOINT, T.STATE):
        shutil.copyfile(best / name, dir1 / name)
    if log:
        log(f"stage 1: continuing the {best_epochs:g}-epoch run {best.name}")


def stage_dirs(run_dir: str | Path | None, stage1: T.Schedule | None, stage2: T.Schedule | None
               ) -> tuple[Path | None, Path | None]:
    """Checkpoint directories of both stages: run/stage1-e<epochs>-lr<lr>/stage2-e<epochs>-lr<lr>.

    Stage 2 lives under the stage 1 it continues, so a finished stage 1 is reused by every
    stage 2 recipe tried on it, and a stage 2 is never resumed on top of another stage 1.
    """
    if run_dir is None:
        return None, None
    dir1 = Path(run_dir) / f"stage1-{_tag(stage1)}" if stage1 is not None else Path(run_dir)
    return dir1, None if stage2 is None else dir1 / f"stage2-{_tag(stage2)}"


def _tag(s: T.Schedule) -> str:
    """A stage's directory tag: its epochs and rate (the rest of the schedule is checked on resume)."""
    return f"e{s.epochs:g}-lr{s.lr:g}"
