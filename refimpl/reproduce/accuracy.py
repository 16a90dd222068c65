"""`refimpl reproduce accuracy`: the freeDiv/MPCFormer accuracy table on MiniLM, one (row, task) at a time.

Rows (freeDiv's conversion framework; MPCFormer's table): the teacher (Softmax + GeLU), then
each MPC-friendly variant fine-tuned directly from MiniLM ("direct", MPCFormer's w/o{d})
and distilled from the teacher in two stages ("distilled", MPCFormer's MPCBert). Columns:
SST-2 accuracy, STS-B Pearson, RTE accuracy on the full dev sets. Scaled to this machine:
a fixed SST-2 training subset (default 8,000 examples), full STS-B and RTE training sets,
few epochs (stated in every result file).

Each run writes results/accuracy/<row>_<task>.json (command, seed, subset, epochs, metric);
`--table` prints the table from those files beside the paper's BERT-base numbers.
For the freeDiv variants, f(n) = a n^b is fitted on the teacher (freediv.fit) with the
variant's kind (Softmax row sums for softmax-freediv, 2Quad row sums for 2quad-freediv).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from refimpl.bert import distill as D
from refimpl.bert import freediv, glue, ours
from refimpl.bert import train as T
from refimpl.cli.common import add_glue_dir, add_json, glue_dir, recorded_argv, write_json
from refimpl.errors import UserError
from refimpl.reproduce.accuracy_table import (  # record names and the table (the command prints it)
    AUGMENTS, BATCH_SIZE, REPLACE_COPIES, REPLACE_RATE, RESULTS, ROWS, STAGE1_TARGET_LABELS, TASK_KEYS, result_path,
    table,
)

FINETUNE_LR = 1e-4  # teacher and direct rows: MiniLM (6 x 384) with few steps; BERT-base uses 2e-5..5e-5
DROPOUT = 0.1  # BERT's, when fine-tuning (teacher and direct rows); the distillation stages run without
DEFAULT_SUBSET = {"SST-2": 8000, "STS-B": None, "RTE": None}
NEIGHBOUR_K, NEIGHBOUR_RATE = 15, 0.4  # --augment neighbours: TinyBERT's K candidates and replacement share p_t
TRANSFER_FROM = {"RTE": "STS-B", "STS-B": "RTE"}  # --augment transfer: whose training pairs (unlabeled) join


def recipe_tag(task: str, subset: int | None, epochs: float, lr: float) -> str:
    """'' for the default fine-tuning recipe (the run `refimpl ship` shares), else '-n<subset|all>-e<epochs>-lr<lr>'.

    Run directories carry it, so a checkpoint of one recipe is never resumed by another
    (train() checks the schedule, not the data subset).
    """
    if subset == DEFAULT_SUBSET[task] and epochs == 1.0 and lr == FINETUNE_LR:
        return ""
    return f"-n{'all' if subset is None else subset}-e{epochs:g}-lr{lr:g}"


def teacher_dir(runs: Path, task: str, seed: int, tag: str = "") -> Path:
    """Where the teacher run saves its model (the distilled rows start from it)."""
    return runs / f"accuracy-teacher-{task}-s{seed}{tag}" / "model"


def recorded_teacher(runs: Path, task: str, seed: int, root: Path = RESULTS) -> tuple[Path, str]:
    """The teacher the distilled rows start from: the run named by results/accuracy/teacher_<task>[_s<seed>].json.

    Returns (model directory, run name); a record without a "run" field is the default recipe.
    """
    path = result_path("teacher", "fine-tuned", task, seed, root)
    run = json.loads(path.read_text()).get("run") if path.exists() else None
    if run is None:
        return teacher_dir(runs, task, seed), f"accuracy-teacher-{task}-s{seed}"
    return runs / run / "model", run


def student_run(runs: Path, row: str, mode: str, task: str, seed: int, subset: int | None, epochs: float, lr: float,
                teacher_run: str, *, fits_on_teacher: bool, quad_init: int = 0, augment: str = "",
                batch_size: int = BATCH_SIZE, copies: int = REPLACE_COPIES, stage1_target: str = "scores",
                score_init: int = 0, dropout: float = 0.0, anneal: float = 0.0) -> Path:
    """The run directory of a direct or distilled row: one per recipe and per teacher it depends on.

    Distilled rows start from the teacher; direct rows of the freeDiv variants take f(n)'s a, b
    from a fit on the teacher. A checkpoint made from another teacher (or subset, or recipe)
    must never be resumed, since train() checks only the schedule: a finished run would be
    returned as it is and evaluated with the new a, b. A start from ours.quad_init (fitted on
    quad_init rows) is another run too: '-qinit<rows>', so is one with scaled queries, '-sinit<rows>',
    and so is a distillation on augmented inputs, '-<augment>' ('-replace<copies>' for another number
    of noisy copies than REPLACE_COPIES, '-neighbours<copies>' alike), one with another batch size, '-b<size>', and one whose
    stage 1 matches another target, '-<target>', one that distills with dropout, '-drop<p>', and one
    whose stage 1 anneals the attention from softmax over E epochs, '-anneal<E>'.
    """
    teacher_tag = teacher_run[len(f"accuracy-teacher-{task}-s{seed}"):]
    if mode == "direct":
        tag = recipe_tag(task, subset, epochs, lr) + (f"-fit{teacher_tag}" if fits_on_teacher and teacher_tag else "")
    else:
        tag = teacher_tag + ("" if subset == DEFAULT_SUBSET[task] else f"-n{'all' if subset is None else subset}")
    if augment in ("replace", "neighbours") and copies != REPLACE_COPIES:
        augment = f"{augment}{copies}"
    return runs / (f"accuracy-{row}-{mode}-{task}-s{seed}{tag}{f'-qinit{quad_init}' if quad_init else ''}"
                   f"{f'-sinit{score_init}' if score_init else ''}"
                   f"{f'-{augment}' if augment else ''}{'' if batch_size == BATCH_SIZE else f'-b{batch_size}'}"
                   f"{'' if stage1_target == 'scores' else f'-{stage1_target}'}{f'-drop{dropout:g}' if dropout else ''}"
                   f"{f'-anneal{anneal:g}' if anneal else ''}")


def train_teacher(task_name: str, glue_dir: str, *, seed: int = 0, subset: int | None = 8000, epochs: float = 1.0,
                  runs: Path, command: str, root: Path = RESULTS, log=print, lr: float = FINETUNE_LR,
                  result_name: str | None = None, note: str | None = None):
    """The teacher row: MiniLM (vocabulary pruned to the task) + [CLS] head fine-tuned; resumable.

    Saves the model to teacher_dir(runs, task, seed, recipe_tag(...)) and writes its result file
    (naming that run): root / result_name if given, else the teacher row's result_path (which
    the distilled rows read). `refimpl ship` calls this too with the default recipe and its own
    result_name, so the shipped models' teacher never replaces the table's teacher record.
    Returns (config, params, tokenizer, record).
    """
    if result_name is not None and (Path(result_name).name != result_name or not result_name.endswith(".json")):
        raise ValueError(f"result_name must be a bare file name ending in .json, got {result_name!r}")
    task = glue.TASKS[task_name]
    tag = recipe_tag(task.name, subset, epochs, lr)
    run = teacher_dir(runs, task.name, seed, tag).parent
    config, params, tok = T.pruned_minilm(task, glue_dir, run, seed=seed)
    max_length = 64 if task.text_b is None else 128
    train_ex = glue.load(task.name, glue_dir, "train")
    train_ex = train_ex.subset(T.subset_index(len(train_ex), subset, seed))
    ids, types = T.encoded(train_ex, tok, max_length)
    sched = T.Schedule(epochs=epochs, lr=lr, warmup=0.1, seed=seed, max_length=max_length, batch_size=BATCH_SIZE,
                       dropout=DROPOUT)
    t0 = time.time()
    params = T.train(params, ids, types, train_ex.labels, T.finetune_loss(config, task, sched.dropout, sched.seed), sched,
                     pad_id=tok.pad_id, run_dir=run / "finetune", desc=f"teacher {task.name}", log=log)
    T.save_model(run / "model", config, params, tok)
    record = _finish(params, config, tok, task, glue_dir, {
        "command": command, "row": "teacher", "mode": "fine-tuned", "attention": "softmax", "activation": "gelu",
        "seed": seed, "train_examples": len(train_ex), "subset": subset, "schedule": asdict(sched), "run": run.name,
        **({} if note is None else {"note": note})}, t0, root, result_name, train_dirs=[run / "finetune"])
    return config, params, tok, record


def _finish(params, config, tok, task: glue.Task, glue_dir: str, record: dict, t0: float, root: Path,
            result_name: str | None = None, train_dirs: Sequence[Path] = ()) -> dict:
    """Evaluate on the full dev set and write results/accuracy/<row>_<task>.json (or root / result_name).

    "seconds": wall time of this command (a resumed run: its last session only); "train_seconds":
    the training time of the checkpoints in train_dirs over every session, when all of them recorded it.
    """
    dev = glue.load(task.name, glue_dir, "dev")
    metrics = T.evaluate(params, config, dev, tok, 128, progress="dev")
    trained = [T.trained_seconds(d) for d in train_dirs]
    record = {"task": task.name, "base": "all-MiniLM-L6-v2 (6 layers, hidden 384), vocabulary pruned to the task",
              **record, "dev_examples": len(dev), "metrics": metrics, "metric": TASK_KEYS[task.name],
              "value": metrics[TASK_KEYS[task.name]], "seconds": round(time.time() - t0),
              **({"train_seconds": round(sum(trained))} if trained and None not in trained else {})}
    path = (root / result_name if result_name is not None
            else result_path(record["row"], record["mode"], task.name, record["seed"], root, bool(record.get("quad_init")),
                             (record.get("stage1_augment") or {}).get("kind", ""),
                             record.get("stage1_target", "scores"), bool(record.get("score_init")),
                             bool((record.get("stage1") or {}).get("dropout", 0.0)),
                             (record.get("anneal") or {}).get("epochs", 0.0)))
    T.write_result(path, record)
    print(json.dumps({"row": record["row"], "mode": record["mode"], "task": task.name, **metrics}))
    print(f"wrote {path}")
    return record


def run_one(row: str, mode: str, task_name: str, glue_dir: str, *, seed: int, subset: int | None, epochs: float,
            stage1_epochs: float, stage2_epochs: float, runs: Path, argv: list[str], root: Path,
            lr: float = FINETUNE_LR, quad_init: int = 0, stage1_lr: float | None = None,
            stage2_lr: float | None = None, augment: str = "", batch_size: int = BATCH_SIZE,
            copies: int = REPLACE_COPIES, stage1_target: str = "scores", score_init: int = 0,
            distill_dropout: float = 0.0, anneal_epochs: float = 0.0) -> dict:
    """Train one (row, task) and write its result file.

    augment "swap" (distilled rows of pair tasks): stage 1 runs on the training pairs and the
    same pairs swapped (ours.swap_pairs); stage 2 on the training set as it is.
    augment "replace" (distilled rows): both stages run on the training rows and `copies` (default
    REPLACE_COPIES) copies with REPLACE_RATE of their tokens replaced (ours.replace_tokens); stage 2 fits the
    teacher's logits on them (STS-B, whose stage 2 fits the gold scores: stage 1 only).
    augment "neighbours" (distilled rows): as "replace", a replaced token drawn uniformly among its
    NEIGHBOUR_K nearest word pieces in the teacher's input embedding (ours.neighbour_candidates), each
    token replaced with probability NEIGHBOUR_RATE (TinyBERT's K and p_t).
    augment "transfer" (distilled rows of pair tasks): as "replace", on the training rows followed by
    the training pairs of the other pair task, TRANSFER_FROM[task], whose labels are not read.
    batch_size (distilled rows): both stages' batch (MPCFormer's run_exp.sh uses 8 for RTE).
    stage1_target (distilled rows): "scores" (MPCFormer), "probs" or "hidden" (ours), see distill.stage1_terms.
    score_init > 0 (distilled 2Quad rows, ours): each head's queries scaled by the alpha of
    ours.score_scale_fit on that many training rows, before f(n) is fitted and distillation starts.
    distill_dropout > 0 (distilled rows): BERT's dropout on the student in both stages, as
    MPCFormer's task_distill trains it (train mode); 0 (the default) distills without it.
    anneal_epochs > 0 (distilled rows whose attention is not softmax, ours): over stage 1's first
    anneal_epochs epochs the student's attention slides linearly from softmax to its variant
    (ours.softmax_share); the evaluated student runs the variant alone.

    quad_init > 0 (Quad rows): the student starts from ours.quad_init fitted on that many
    training rows (distilled: of the teacher; direct: of MiniLM's own GELU), not from the
    plain GELU -> Quad swap, which collapses the tokens of a sentence (see distill.py).
    """
    command = "refimpl reproduce accuracy " + " ".join(argv)
    log = lambda s: print(s, flush=True)  # noqa: E731
    if quad_init and ROWS[row][1] != "quad":
        raise UserError(f"--quad-init refits Quad units; row {row} uses {ROWS[row][1]}")
    if augment not in AUGMENTS:
        raise UserError(f"unknown augmentation {augment!r}; expected one of {sorted(AUGMENTS)}")
    if augment and (row == "teacher" or mode != "distilled"):
        raise UserError(f"--augment {augment} augments the distillation of a distilled row, "
                         f"got {'the teacher' if row == 'teacher' else f'mode {mode!r}'} on {task_name}")
    if augment == "swap" and glue.TASKS[task_name].text_b is None:
        raise UserError(f"--augment swap augments stage 1 of a distilled row on a pair task, got {task_name}, "
                         "whose examples are single sentences")
    if augment == "transfer" and task_name not in TRANSFER_FROM:
        raise UserError(f"--augment transfer adds the training pairs of another pair task "
                         f"({', '.join(f'{a} <- {b}' for a, b in TRANSFER_FROM.items())}), got {task_name}")
    if copies != REPLACE_COPIES and augment not in ("replace", "neighbours"):
        raise UserError(f"--copies {copies} sets the number of noisy copies of --augment replace or neighbours, "
                         f"got {f'--augment {augment}' if augment else 'no augmentation'}")
    if copies < 1:
        raise UserError(f"--augment {augment or 'replace'} needs at least one noisy copy per row, got --copies {copies}")
    if batch_size != BATCH_SIZE and (row == "teacher" or mode != "distilled"):
        raise UserError(f"--batch-size sets the distillation batch; the {mode if row != 'teacher' else 'teacher'} "
                         f"row fine-tunes with {BATCH_SIZE}")
    if batch_size < 1:
        raise UserError(f"batch size must be positive, got {batch_size}")
    if stage1_target not in STAGE1_TARGET_LABELS:
        raise UserError(f"unknown stage-1 target {stage1_target!r}; expected one of {sorted(STAGE1_TARGET_LABELS)}")
    if stage1_target != "scores" and (row == "teacher" or mode != "distilled"):
        raise UserError(f"--stage1-target {stage1_target} sets stage 1 of a distilled row, got the "
                         f"{'teacher' if row == 'teacher' else mode} row")
    if score_init and (row == "teacher" or mode != "distilled" or ROWS[row][0] not in ("2quad", "2quad-freediv")):
        raise UserError(f"--score-init scales the queries of a distilled 2Quad row, got {row} {mode or ''}".rstrip())
    if distill_dropout and (row == "teacher" or mode != "distilled"):
        raise UserError(f"--distill-dropout sets the student's dropout in distillation; the "
                         f"{'teacher' if row == 'teacher' else mode} row fine-tunes with {DROPOUT}")
    if anneal_epochs and (row == "teacher" or mode != "distilled" or ROWS[row][0] == "softmax"):
        raise UserError(f"--anneal-epochs slides the attention of a distilled row from softmax to its variant, "
                         f"got {row} {'' if row == 'teacher' else mode}".rstrip())
    if anneal_epochs and not 0.0 < anneal_epochs <= stage1_epochs:
        raise UserError(f"--anneal-epochs must lie in (0, --stage1-epochs = {stage1_epochs:g}], got {anneal_epochs:g}")
    if not 0.0 <= distill_dropout < 1.0:
        raise UserError(f"--distill-dropout must lie in [0, 1), got {distill_dropout}")
    if row == "teacher":
        return train_teacher(task_name, glue_dir, seed=seed, subset=subset, epochs=epochs, runs=runs,
                             command=command, root=root, log=log, lr=lr)[3]
    task = glue.TASKS[task_name]
    attention, activation = ROWS[row]
    max_length = 64 if task.text_b is None else 128
    train_ex = glue.load(task.name, glue_dir, "train")
    train_ex = train_ex.subset(T.subset_index(len(train_ex), subset, seed))
    common = dict(seed=seed, max_length=max_length, batch_size=batch_size)
    t0 = time.time()
    record: dict = {"command": command, "row": row, "mode": mode, "attention": attention, "activation": activation,
                    "seed": seed, "train_examples": len(train_ex), "subset": subset}
    tdir, trun = recorded_teacher(runs, task.name, seed, root)
    record["teacher_run"] = trun
    if not (tdir / "model.safetensors").exists():
        raise FileNotFoundError(f"{tdir}: run the teacher row first (refimpl reproduce accuracy --row teacher "
                                f"--task {task.name} --glue-dir ...)")
    tconfig, tparams, tok = T.load_model(str(tdir), task)
    ids, types = T.encoded(train_ex, tok, max_length)
    overrides: dict = {"attention": attention, "activation": activation}
    scales, fit_params = None, tparams
    if score_init:
        rows = T.subset_index(len(ids), score_init, 0)
        scales = ours.score_scale_fit(tconfig, tparams, [ids[i] for i in rows], [types[i] for i in rows], "2quad",
                                   pad_id=tok.pad_id)
        fit_params = ours.scale_queries(tconfig, tparams, scales)  # f(n) of the scaled start
        grid = ours.SCORE_SCALES
        record["score_init"] = {"rows": score_init, "grid": [float(grid[0]), float(grid[-1]), len(grid)],
                                "alpha": scales.round(4).tolist()}
    kind = {"2quad-freediv": "2quad", "softmax-freediv": "softmax"}.get(attention)
    if kind is not None:  # f(n) fitted on the teacher, as the paper fits on its model
        probe = tconfig.replace(attention="2quad") if kind == "2quad" else tconfig
        rec = freediv.record_denominators(fit_params, probe, ids[:2000], types[:2000], kind, pad_id=tok.pad_id)
        a, b = freediv.fit(rec)
        overrides |= {"freediv_a": a, "freediv_b": b}
        record["freediv_fit"] = {"a": a, "b": b, "on": "the teacher" + (" with scaled queries" if score_init else "")
                                 + ", 2,000 training rows"}
    run = student_run(runs, row, mode, task.name, seed, subset, epochs, lr, trun, fits_on_teacher=kind is not None,
                      quad_init=quad_init, augment=augment, batch_size=batch_size, copies=copies,
                      stage1_target=stage1_target, score_init=score_init, dropout=distill_dropout,
                      anneal=anneal_epochs)
    record["run"] = run.name
    if quad_init:
        record["quad_init"] = {"rows": quad_init, "min_curvature": ours.QUAD_INIT_MIN_CURVATURE,
                               "of": "MiniLM (GELU)" if mode == "direct" else "the teacher"}
    if mode == "direct":  # MiniLM with the variant swapped in, fine-tuned on the task (MPCFormer w/o{d})
        config, params, tok = T.pruned_minilm(task, glue_dir, run, seed=seed, **overrides)
        if quad_init:  # MiniLM's own GELU units, refitted (pruned_minilm has already swapped the names only)
            rows = T.subset_index(len(ids), quad_init, 0)
            params = ours.quad_init(config.replace(attention="softmax", activation="gelu"), params,
                                 [ids[i] for i in rows], [types[i] for i in rows], pad_id=tok.pad_id)
        sched = T.Schedule(epochs=epochs, lr=lr, warmup=0.1, dropout=DROPOUT, **common)
        params = T.train(params, ids, types, train_ex.labels, T.finetune_loss(config, task, sched.dropout, sched.seed), sched,
                         pad_id=tok.pad_id, run_dir=run / "finetune", desc=f"{row} direct {task.name}", log=log)
        record["schedule"] = asdict(sched)
        train_dirs = [run / "finetune"]
    else:  # the teacher's weights with the variant swapped in, two-stage distillation (MPCFormer)
        config = tconfig.replace(**overrides)
        layer_map = list(range(tconfig.num_hidden_layers))
        s1 = T.Schedule(epochs=stage1_epochs, lr=D.STAGE1_LR if stage1_lr is None else stage1_lr, warmup=0.0,
                        schedule="constant", dropout=distill_dropout, **common)
        s2 = T.Schedule(epochs=stage2_epochs, lr=D.STAGE2_LR if stage2_lr is None else stage2_lr, warmup=0.1,
                        schedule="linear", dropout=distill_dropout, **common)
        stage1_inputs = stage2_inputs = None
        if augment == "swap":
            stage1_inputs = T.encoded(ours.swap_pairs(train_ex), tok, max_length)
            record["stage1_augment"] = {"kind": "swap", "inputs": len(stage1_inputs[0]),
                                        "what": "each training pair, and the same pair swapped (stage 1 only)"}
        elif augment in ("replace", "neighbours"):
            keep = [tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id]
            near = None
            if augment == "neighbours":
                pieces = [tok.wordpiece.id_to_token(i) or "" for i in range(tconfig.vocab_size)]
                near = ours.neighbour_candidates(tparams["embeddings.word_embeddings.weight"], pieces, k=NEIGHBOUR_K,
                                              keep=keep)
            rate = REPLACE_RATE if near is None else NEIGHBOUR_RATE
            stage1_inputs = ours.replace_tokens(ids, types, copies=copies, rate=rate, seed=seed, keep=keep,
                                             candidates=near)
            stage2_inputs = stage1_inputs if task.labels is not None else None
            record["stage1_augment"] = {
                "kind": augment, "inputs": len(stage1_inputs[0]), "copies": copies, "rate": rate,
                **({} if near is None else {"k": NEIGHBOUR_K}),
                "stages": "1 and 2" if stage2_inputs is not None else "1",
                "what": "each training row, and copies with a share of its tokens replaced by "
                        + ("the rows' own (unigram draws)" if near is None
                           else "one of their nearest word pieces in the teacher's input embedding")}
        elif augment == "transfer":
            other = glue.load(TRANSFER_FROM[task.name], glue_dir, "train")
            extra_ids, extra_types = T.encoded(other, tok, max_length)  # the student's vocabulary; labels unread
            stage1_inputs = (ids + extra_ids, types + extra_types)
            stage2_inputs = stage1_inputs if task.labels is not None else None
            record["stage1_augment"] = {
                "kind": "transfer", "inputs": len(stage1_inputs[0]), "from": other.task.name,
                "from_pairs": len(extra_ids), "stages": "1 and 2" if stage2_inputs is not None else "1",
                "what": f"each training row, then the {other.task.name} training pairs (text only)"}
        if stage1_target != "scores":
            record["stage1_target"] = stage1_target
        if anneal_epochs:
            record["anneal"] = {"epochs": anneal_epochs,
                                "what": "stage 1: attention = w softmax + (1 - w) the row's, w from 1 to 0 linearly "
                                        "over these epochs, then 0; stage 2 and evaluation: the row's alone"}
        params = D.distill(tconfig, tparams, config, layer_map, task, ids, types, train_ex.labels, s1, s2,
                           pad_id=tok.pad_id, run_dir=run, quad_init_rows=quad_init, stage1_inputs=stage1_inputs,
                           stage2_inputs=stage2_inputs, stage1_target=stage1_target, score_scales=scales,
                           anneal_epochs=anneal_epochs, log=log)
        record["stage1"], record["stage2"] = asdict(s1), asdict(s2)
        train_dirs = list(D.stage_dirs(run, s1, s2))
    return _finish(params, config, tok, task, glue_dir, record, t0, root, train_dirs=train_dirs)


def add_arguments(p) -> None:
    """The options of `refimpl reproduce accuracy`."""
    p.add_argument("--table", action="store_true", help="print the table from results/accuracy/*.json")
    p.add_argument("--results", default=str(RESULTS), help="the result files (default: results/accuracy in the repository)")
    p.add_argument("--row", choices=tuple(ROWS), default="teacher")
    p.add_argument("--mode", choices=("direct", "distilled"), default="distilled")
    p.add_argument("--task", choices=tuple(TASK_KEYS), default="SST-2")
    add_glue_dir(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=-1, help="training subset (default 8000 for SST-2, else all)")
    p.add_argument("--epochs", type=float, default=1.0, help="fine-tuning epochs (teacher and direct rows)")
    p.add_argument("--lr", type=float, default=FINETUNE_LR, help="fine-tuning peak learning rate (teacher and direct rows)")
    p.add_argument("--stage1-epochs", type=float, default=1.0)
    p.add_argument("--stage2-epochs", type=float, default=1.0)
    p.add_argument("--stage1-lr", type=float, help="distilled rows: stage-1 learning rate (default MPCFormer's 5e-5)")
    p.add_argument("--stage2-lr", type=float, help="distilled rows: stage-2 peak learning rate (default MPCFormer's 1e-5)")
    p.add_argument("--quad-init", type=int, default=0, metavar="ROWS",
                   help="Quad rows: start from ours.quad_init fitted on ROWS training rows (0: the plain swap)")
    p.add_argument("--augment", "--stage1-augment", dest="augment", choices=sorted(AUGMENTS), default="",
                   help="distilled rows (ours): 'swap' (STS-B, RTE) runs stage 1 on each pair in both orders too; "
                        f"'replace' runs both stages on --copies noisy copies of each row, a share {REPLACE_RATE:g} "
                        "of its tokens replaced too (stage 2 of classification tasks); 'neighbours' the same with a share "
                        f"{NEIGHBOUR_RATE:g} replaced by one of their {NEIGHBOUR_K} nearest word pieces (TinyBERT's "
                        "candidates); 'transfer' (RTE, STS-B) runs "
                        "both stages on the other pair task's training pairs too, unlabeled (--stage1-augment: old name)")
    p.add_argument("--copies", type=int, default=REPLACE_COPIES,
                   help=f"--augment replace or neighbours: noisy copies per training row (default {REPLACE_COPIES})")
    p.add_argument("--score-init", type=int, default=0, metavar="ROWS",
                   help="distilled 2Quad rows (ours): scale each head's queries by the alpha fitted on ROWS training "
                        "rows (ours.score_scale_fit; 0: as the teacher)")
    p.add_argument("--stage1-target", choices=tuple(STAGE1_TARGET_LABELS), default="scores",
                   help="distilled rows: stage 1 matches the pre-softmax scores (MPCFormer), the attention "
                        "probabilities (ours), or no attention term, the hidden states only (ours)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"distilled rows: batch of both stages (default {BATCH_SIZE}; MPCFormer's RTE script uses 8)")
    p.add_argument("--distill-dropout", type=float, default=0.0, metavar="P",
                   help="distilled rows: BERT's dropout on the student in both stages (MPCFormer trains it in train "
                        "mode, 0.1; default 0: none)")
    p.add_argument("--anneal-epochs", type=float, default=0.0, metavar="E",
                   help="distilled rows (ours): over stage 1's first E epochs the student's attention slides "
                        "linearly from softmax to the row's (default 0: the row's from the start)")
    p.add_argument("--run-dir", default=str(T.DEFAULT_RUNS))
    add_json(p, help="also write the result record (with --table: the records and the table) as JSON to this file")


def run(args) -> int:
    """Run one (row, task) of the accuracy table, or print the table with --table."""
    argv = recorded_argv(args.argv[2:])  # the command line after `refimpl reproduce accuracy`, for the record
    root = Path(args.results)
    if args.table:
        if not any(root.glob("*.json")):
            raise SystemExit(f"refimpl reproduce accuracy: error: no results in {root} (*.json): run rows first "
                             "(`refimpl reproduce accuracy --row ROW --glue-dir DIR`) or give --results DIR")
        text = table(root)
        print(text)
        if args.json:
            records = [{"file": f.name, **json.loads(f.read_text())} for f in sorted(root.glob("*.json"))]
            write_json(args.json, {"command": "refimpl reproduce accuracy " + " ".join(argv), "records": records,
                                   "table": text})
        return 0
    glue_dir(args)  # --glue-dir, then $REFIMPL_GLUE_DIR, then one clear error line
    subset = DEFAULT_SUBSET[args.task] if args.subset == -1 else (None if args.subset == 0 else args.subset)
    record = run_one(args.row, args.mode, args.task, args.glue_dir, seed=args.seed, subset=subset, epochs=args.epochs,
            stage1_epochs=args.stage1_epochs, stage2_epochs=args.stage2_epochs, runs=Path(args.run_dir),
            argv=argv, root=root, lr=args.lr, quad_init=args.quad_init, stage1_lr=args.stage1_lr,
            stage2_lr=args.stage2_lr, augment=args.augment, batch_size=args.batch_size, copies=args.copies,
            stage1_target=args.stage1_target, score_init=args.score_init, distill_dropout=args.distill_dropout,
            anneal_epochs=args.anneal_epochs)
    if args.json:
        write_json(args.json, record)
    return 0

