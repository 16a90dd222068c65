"""`refimpl ship`: build the shipped small SST-2 models (refimpl.bert.shipped loads them).

From MiniLM: the vocabulary pruned to SST-2 train + dev, the teacher (the accuracy table's
default-recipe teacher row), the 2-layer small model (MPCFormer stage 2 on the teacher's
logits) and its 2Quad-freeDiv + Quad student (freeDiv's f(n) fitted on the small model, then
MPCFormer's two-stage distillation); every step seeded and checkpointed under the run
directory. The steps are listed in refimpl/bert/shipped.py. The command (refimpl.cli.bert)
then calibrates each model's NEXUS ranges.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from refimpl.bert import distill as D
from refimpl.bert import freediv, glue, shipped
from refimpl.bert import train as T
from refimpl.bert.config import BertConfig
from refimpl.bert.model import Params, check_params, forward
from refimpl.bert.tokenizer import BertTokenizer
from refimpl.reproduce import accuracy

DATA = "GLUE SST-2 train.tsv (training) and dev.tsv (dev accuracy); GLUE is the directory given as --glue-dir"

SST2_LABELS = ("negative", "positive")  # GLUE SST-2: label 0 negative, 1 positive


def save_shipped(out: Path, config: BertConfig, params: Params, vocab: list[str], meta: dict) -> Path:
    """Write model.safetensors (float16), config.json, vocab.txt, meta.json."""
    check_params(config, params)
    if config.vocab_size != len(vocab):
        raise ValueError(f"config vocab_size {config.vocab_size} but {len(vocab)} tokens")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v.astype(np.float16)) for k, v in params.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "refimpl-bert"})
    (out / "config.json").write_text(config.to_json(labels=SST2_LABELS) + "\n")
    T.write_vocab(out / "vocab.txt", vocab)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def fixture_logits(config: BertConfig, params: Params, tok: BertTokenizer) -> list[list]:
    """[sentence, logits] for shipped.FIXTURE_SENTENCES (recorded so tests can check a loaded model)."""
    rows = []
    for s in shipped.FIXTURE_SENTENCES:
        ids, _ = tok.encode(s, max_length=128)
        logits = forward(params, config, np.array([ids]), None, None).logits[0]
        rows.append([s, [float(x) for x in logits]])
    return rows


def fp16(params: Params) -> Params:
    """The parameters as they are after the float16 round trip of the shipped file."""
    return {k: v.astype(np.float16).astype(np.float32) for k, v in params.items()}


def portable(argv: list[str]) -> list[str]:
    """The command line with the GLUE directory written as GLUE: a record names no directory of one machine."""
    out, skip = [], False
    for a in argv:
        if skip:
            out.append("GLUE")
            skip = False
        elif a == "--glue-dir":
            out.append(a)
            skip = True
        elif a.startswith("--glue-dir="):
            out.append("--glue-dir=GLUE")
        else:
            out.append(a)
    return out


def build(args: argparse.Namespace, argv: list[str]) -> int:
    """Both shipped SST-2 models from MiniLM (teacher, small model, student), written under args.out.

    args: the options of `refimpl ship` (refimpl.cli.bert); argv: the command line as typed, recorded in meta.json.
    """
    out = Path(args.out) if args.out else shipped.MODELS_DIR
    runs = Path(args.run_dir) if args.run_dir else T.DEFAULT_RUNS
    whole = lambda n: None if n == 0 else n  # noqa: E731
    log = lambda s: print(s, flush=True)  # noqa: E731
    t0 = time.time()
    task = glue.TASKS["SST-2"]
    train_all = glue.load("SST-2", args.glue_dir, "train")
    dev = glue.load("SST-2", args.glue_dir, "dev")

    # 1.-2. vocabulary pruned to SST-2 train + dev; teacher = the accuracy table's teacher row
    command = T.command_line("refimpl ship", portable(argv))
    config, teacher, tok, trecord = accuracy.train_teacher(
        "SST-2", args.glue_dir, seed=args.seed, subset=whole(args.teacher_subset), epochs=args.teacher_epochs,
        runs=runs, command=command, root=Path(args.results), log=log,
        result_name=shipped.TEACHER_RESULT, note=shipped.TEACHER_NOTE)
    # checkpoints keyed by the teacher and the data sizes (a run dir's schedule check covers epochs and lr)
    run = runs / "ship" / trecord.get("run", "teacher")
    small_run = run / f"small-{args.layers.replace(',', '_')}-n{args.small_subset or 'all'}"
    student_run = small_run / f"student-n{args.student_subset or 'all'}{f'-qinit{args.quad_init}' if args.quad_init else ''}"
    vocab = [tok.wordpiece.id_to_token(i) for i in range(tok.vocab_size)]
    teacher_acc = trecord["value"]
    log(f"vocabulary: {len(vocab)} tokens; teacher ({config.num_hidden_layers} layers) SST-2 dev accuracy {teacher_acc:.4f}")

    def sched(epochs, lr, warmup, schedule):
        return T.Schedule(epochs=epochs, lr=lr, warmup=warmup, schedule=schedule, seed=args.seed,
                          max_length=args.max_length)

    def data(size):
        ex = train_all.subset(T.subset_index(len(train_all), whole(size), args.seed))
        ids, types = T.encoded(ex, tok, args.max_length)
        return ex, ids, types

    # 3. small model: layer map from the teacher, soft CE on the teacher's logits
    layer_map = [int(x) for x in args.layers.split(",")]
    small_config, small_init = T.select_layers(config, teacher, layer_map)
    ex, ids, types = data(args.small_subset)
    small_examples = len(ids)
    s_small = sched(args.small_epochs, args.small_lr, 0.1, "linear")
    small = D.distill(config, teacher, small_config, layer_map, task, ids, types, ex.labels, None, s_small,
                      pad_id=tok.pad_id, run_dir=small_run, student_params=small_init, log=log)
    small = fp16(small)
    small_acc = T.evaluate(small, small_config, dev, tok, 128, progress="dev")["accuracy"]
    log(f"small ({len(layer_map)} layers) SST-2 dev accuracy {small_acc:.4f}")

    # 4. student: fit f(n) on the small model run with 2Quad, then two-stage distillation
    ex, ids, types = data(args.student_subset)
    student_examples = len(ids)
    quad_config = small_config.replace(attention="2quad")
    rec = freediv.record_denominators(small, quad_config, ids[:4000], types[:4000], "2quad", pad_id=tok.pad_id)
    a, b = freediv.fit(rec)
    log(f"2Quad denominator fit on the small model: a = {a:.4f}, b = {b:.4f} (paper {freediv.PAPER['2quad']})")
    student_config = small_config.replace(attention="2quad-freediv", activation="quad", freediv_a=a, freediv_b=b)
    identity = list(range(small_config.num_hidden_layers))
    s1 = sched(args.stage1_epochs, args.stage1_lr, 0.0, "constant")
    s2 = sched(args.stage2_epochs, args.stage2_lr, 0.1, "linear")
    student = D.distill(small_config, small, student_config, identity, task, ids, types, ex.labels, s1, s2,
                        pad_id=tok.pad_id, run_dir=student_run, quad_init_rows=args.quad_init, log=log)
    student = fp16(student)
    student_acc = T.evaluate(student, student_config, dev, tok, 128, progress="dev")["accuracy"]
    log(f"student SST-2 dev accuracy {student_acc:.4f}")

    common = {"command": command, "data": DATA, "seed": args.seed, "base": "sentence-transformers/all-MiniLM-L6-v2",
              "vocabulary": f"MiniLM WordPiece pruned to the {len(vocab) - 5} pieces of SST-2 train + dev, plus 5 specials",
              "max_length_train": args.max_length,
              "teacher": {"layers": config.num_hidden_layers, "train_examples": trecord.get("train_examples", args.teacher_subset),
                          "schedule": trecord["schedule"], "dev_accuracy": teacher_acc},
              "seconds": round(time.time() - t0)}
    small_meta = common | {
        "name": shipped.NAMES[0], "layer_map": {"student layer i <- teacher layer": layer_map},
        "training": {"how": "soft cross-entropy (T = 1) on the teacher's logits (MPCFormer stage 2)",
                     "train_examples": small_examples, "schedule": asdict(s_small)},
        "dev_accuracy": small_acc, "dev_examples": len(dev),
        "fixture_logits": fixture_logits(small_config, small, tok)}
    student_meta = common | {
        "name": shipped.NAMES[1], "distilled_from": shipped.NAMES[0], "layer_map": {"student layer i <- small layer": identity},
        "freediv_fit": {"a": a, "b": b, "how": "freediv.fit on the small model run with 2Quad, 4000 training sentences"},
        "training": {"how": "MPCFormer two-stage distillation: stage 1 score + hidden MSE 1:1, stage 2 soft CE T = 1"
                            + (", from ours.quad_init of the small model (ours)" if args.quad_init else ""),
                     "train_examples": student_examples,
                     "quad_init_rows": args.quad_init, "stage1": asdict(s1), "stage2": asdict(s2)},
        "dev_accuracy": student_acc, "dev_examples": len(dev),
        "fixture_logits": fixture_logits(student_config, student, tok)}
    for name, c, prm, meta in ((shipped.NAMES[0], small_config, small, small_meta), (shipped.NAMES[1], student_config, student, student_meta)):
        (out / name / "nexus_ranges.json").unlink(missing_ok=True)  # the previous weights' (`refimpl ship` redoes them)
        d = save_shipped(out / name, c, prm, vocab, meta)
        size = (d / "model.safetensors").stat().st_size
        log(f"wrote {d} ({size / 2**20:.1f} MiB), dev accuracy {meta['dev_accuracy']:.4f}")
    return 0
