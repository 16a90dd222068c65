"""Two-stage distillation of an MPC-friendly student from its teacher: `refimpl distill`.

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
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from refimpl.bert import glue
from refimpl.bert import train as T
from refimpl.bert.config import BertConfig
from refimpl.bert.model import ForwardResult, Params, backward, forward
from refimpl.bert.tokenizer import Batch


def stage1_terms(
    student: ForwardResult, teacher: ForwardResult, mask: np.ndarray, layer_map: Sequence[int]
) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """Loss = sum_l MSE(scores_l) + sum_i MSE(hidden_i) and the gradients on the student's scores and hidden states (MPCFormer stage 1).

    mask [B, n] 0/1; layer_map[i] = teacher layer of student layer i.
    Returns (loss, d_hidden_states [L+1], d_attention_scores [L]).
    """
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
    d_scores: list[np.ndarray] = []
    for i, t in enumerate(layer_map):
        li, di = T.mse(student.attention_scores[i], teacher.attention_scores[t].astype(dtype, copy=False), m_pair)
        loss += li
        d_scores.append(di.astype(dtype, copy=False))
    return loss, d_hidden, d_scores


def stage1_loss(config: BertConfig, teacher_config: BertConfig, teacher_params: Params,
                layer_map: Sequence[int]) -> T.LossFn:
    """Stage 1 loss function for train(): teacher forward, student forward, MSEs, student backward."""

    def loss_fn(params: Params, batch: Batch, labels: np.ndarray, index: np.ndarray, step: int) -> tuple[float, Params]:
        args = (batch.input_ids, batch.token_type_ids, batch.attention_mask)
        t = forward(teacher_params, teacher_config, *args)
        s = forward(params, config, *args)
        loss, dh, ds = stage1_terms(s, t, batch.attention_mask, layer_map)
        return loss, backward(params, config, s, None, d_hidden_states=dh, d_attention_scores=ds)

    return loss_fn


def stage2_loss(config: BertConfig, task: glue.Task, teacher_logits: np.ndarray, temperature: float = 1.0) -> T.LossFn:
    """Stage 2 loss for train(): soft CE to the teacher's logits (precomputed per example); STS-B: MSE to gold."""

    def loss_fn(params: Params, batch: Batch, labels: np.ndarray, index: np.ndarray, step: int) -> tuple[float, Params]:
        s = forward(params, config, batch.input_ids, batch.token_type_ids, batch.attention_mask)
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
    log=None,
) -> Params:
    """Both stages; the student starts from the teacher's layers by layer_map unless student_params is given."""
    if student_params is None:
        _, student_params = T.select_layers(teacher_config, teacher_params, layer_map)
    if student_config.num_hidden_layers != len(layer_map):
        raise ValueError(f"student has {student_config.num_hidden_layers} layers, layer map {list(layer_map)}")
    run_dir = None if run_dir is None else Path(run_dir)
    params = student_params
    if stage1 is not None:
        params = T.train(params, ids, types, labels, stage1_loss(student_config, teacher_config, teacher_params, layer_map),
                         stage1, pad_id=pad_id, run_dir=None if run_dir is None else run_dir / "stage1",
                         desc="distill stage 1", log=log)
    if stage2 is not None:
        teacher_logits = T.predict(teacher_params, teacher_config, ids, types, pad_id=pad_id, progress="teacher logits")
        params = T.train(params, ids, types, labels, stage2_loss(student_config, task, teacher_logits),
                         stage2, pad_id=pad_id, run_dir=None if run_dir is None else run_dir / "stage2",
                         desc="distill stage 2", log=log)
    return params


def main(argv: list[str]) -> int:
    """`refimpl distill`: two-stage distillation of a student variant from a fine-tuned teacher directory."""
    p = argparse.ArgumentParser(prog="refimpl distill", description=main.__doc__)
    p.add_argument("--teacher", required=True, help="fine-tuned teacher model directory (refimpl train --out)")
    p.add_argument("--task", choices=tuple(glue.TASKS), default="SST-2")
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--attention", default="2quad-freediv")
    p.add_argument("--activation", default="quad")
    p.add_argument("--freediv-a", type=float, default=None)
    p.add_argument("--freediv-b", type=float, default=None)
    p.add_argument("--layers", default=None, help="layer map: student layer i <- teacher layer map[i] (default all)")
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--stage1-epochs", type=float, default=1.0)
    p.add_argument("--stage2-epochs", type=float, default=1.0)
    p.add_argument("--stage1-lr", type=float, default=5e-5)
    p.add_argument("--stage2-lr", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--result", default=None)
    args = p.parse_args(argv)
    task = glue.TASKS[args.task]
    tconfig, tparams, tok = T.load_model(args.teacher, task)
    layer_map = list(range(tconfig.num_hidden_layers)) if not args.layers else [int(x) for x in args.layers.split(",")]
    sconfig = tconfig.replace(attention=args.attention, activation=args.activation, num_hidden_layers=len(layer_map),
                              freediv_a=args.freediv_a, freediv_b=args.freediv_b)
    max_length = args.max_length or (64 if task.text_b is None else 128)
    common = dict(batch_size=args.batch_size, seed=args.seed, max_length=max_length, save_every=args.save_every)
    s1 = T.Schedule(epochs=args.stage1_epochs, lr=args.stage1_lr, warmup=0.0, schedule="constant", **common) \
        if args.stage1_epochs > 0 else None
    s2 = T.Schedule(epochs=args.stage2_epochs, lr=args.stage2_lr, warmup=0.1, schedule="linear", **common) \
        if args.stage2_epochs > 0 else None
    train_ex = glue.load(task.name, args.glue_dir, "train")
    train_ex = train_ex.subset(T.subset_index(len(train_ex), args.subset, args.seed))
    ids, types = T.encoded(train_ex, tok, max_length)
    name = f"distill-{task.name}-{sconfig.attention}-{sconfig.activation}-L{len(layer_map)}-s{args.seed}"
    run_dir = Path(args.run_dir) if args.run_dir else T.DEFAULT_RUNS / name
    t0 = time.time()
    params = distill(tconfig, tparams, sconfig, layer_map, task, ids, types, train_ex.labels, s1, s2,
                     pad_id=tok.pad_id, run_dir=run_dir, log=lambda s: print(s, flush=True))
    dev = glue.load(task.name, args.glue_dir, "dev")
    metrics = T.evaluate(params, sconfig, dev, tok, 128, progress="dev")
    print(json.dumps({"task": task.name, **metrics, "seconds": round(time.time() - t0, 1)}))
    if args.out:
        T.save_model(args.out, sconfig, params, tok)
    if args.result:
        T.write_result(args.result, {
            "command": T.command_line("refimpl distill", argv), "task": task.name, "attention": sconfig.attention,
            "activation": sconfig.activation, "layers": sconfig.num_hidden_layers, "layer_map": layer_map,
            "distilled": True, "train_examples": len(train_ex), "subset": args.subset,
            "stage1": None if s1 is None else asdict(s1), "stage2": None if s2 is None else asdict(s2),
            "metrics": metrics})
    return 0
