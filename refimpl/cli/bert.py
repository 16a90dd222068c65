"""`refimpl train | distill | fit-freediv | eval | ship`: the BERT commands.

Each command is one function f(args) -> int over the parsed options; the library (refimpl.bert,
refimpl.reproduce.ship) is imported inside it. A model argument is a model directory or the
name of a shipped model (refimpl.bert.shipped.NAMES).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from refimpl.cli import nexus
from refimpl.cli.common import add_glue_dir, add_json, glue_dir, repo_path, write_json
from refimpl.errors import UserError

TASKS = ("SST-2", "STS-B", "RTE")  # refimpl.bert.glue.TASKS (checked in tests/bert/test_cli.py)
STAGE1_LR = 5e-5  # refimpl.bert.distill.STAGE1_LR (MPCFormer), checked in tests/bert/test_cli.py
STAGE2_LR = 1e-5  # refimpl.bert.distill.STAGE2_LR (MPCFormer)
STAGE1_TARGETS = ("scores", "probs", "hidden")  # refimpl.bert.distill.STAGE1_TARGETS
FREEDIV_KINDS = ("softmax", "2quad")  # refimpl.bert.freediv.KINDS
MODEL_HELP = "a model directory or a shipped model's name"


def _fail(prog: str, err: Exception) -> int:
    """One clear line for a model that cannot be loaded (unknown name, not built, no such directory)."""
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


def _argv(args: argparse.Namespace) -> list[str]:
    """The command's own arguments as typed (for the provenance of result files)."""
    return list(getattr(args, "argv", None) or [])[1:]


# ---------------------------------------------------------------------------------------
# refimpl train / eval
# ---------------------------------------------------------------------------------------


def train(args: argparse.Namespace) -> int:
    """`refimpl train`: fine-tune a model on a GLUE task, save it, evaluate it on dev."""
    from refimpl.bert import glue  # lazy: keeps `refimpl --help` instant
    from refimpl.bert import train as T

    task = glue.TASKS[args.task]
    glue_dir(args)
    max_length = args.max_length or (64 if task.text_b is None else 128)
    sched = T.Schedule(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                       weight_decay=args.weight_decay, schedule="linear", seed=args.seed,
                       max_length=max_length, save_every=args.save_every, dropout=args.dropout)
    try:
        config, params, tok = T.load_model(args.model, task, seed=args.seed, attention=args.attention,
                                           activation=args.activation)
    except (FileNotFoundError, ValueError) as err:
        return _fail("refimpl train", err)
    if args.layers:
        config, params = T.select_layers(config, params, [int(x) for x in args.layers.split(",")])
    name = args.name or f"{task.name}-{config.attention}-{config.activation}-L{config.num_hidden_layers}-s{sched.seed}"
    run_dir = Path(args.run_dir) if args.run_dir else T.DEFAULT_RUNS / name
    train_ex = glue.load(task.name, args.glue_dir, "train")
    train_ex = train_ex.subset(T.subset_index(len(train_ex), args.subset, sched.seed))
    dev_ex = glue.load(task.name, args.glue_dir, "dev")
    ids, types = T.encoded(train_ex, tok, sched.max_length)
    t0 = time.time()
    params = T.train(params, ids, types, train_ex.labels, T.finetune_loss(config, task, sched.dropout, sched.seed),
                     sched, pad_id=tok.pad_id, run_dir=run_dir / "finetune", desc=name,
                     log=lambda s: print(s, flush=True))
    metrics = T.evaluate(params, config, dev_ex, tok, 128, progress="dev")
    print(json.dumps({"task": task.name, **metrics, "seconds": round(time.time() - t0, 1)}))
    if args.out:
        T.save_model(args.out, config, params, tok)
    if args.json:
        T.write_result(args.json, {"command": T.command_line("refimpl train", _argv(args)), "task": task.name,
                                     "attention": config.attention, "activation": config.activation,
                                     "layers": config.num_hidden_layers, "distilled": False,
                                     "train_examples": len(train_ex), "subset": args.subset,
                                     "schedule": asdict(sched), "metrics": metrics})
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """`refimpl eval`: GLUE metric of a saved model directory or a shipped model."""
    from refimpl.bert import glue  # lazy: keeps `refimpl --help` instant
    from refimpl.bert import train as T

    task = glue.TASKS[args.task]
    try:
        config, params, tok = T.load_model(args.model, task)
    except (FileNotFoundError, ValueError) as err:
        return _fail("refimpl eval", err)
    glue_dir(args)  # after the model: a wrong model name is the first thing to hear of
    try:
        ex = glue.load(task.name, args.glue_dir, args.split)
    except (FileNotFoundError, ValueError) as err:
        return _fail("refimpl eval", err)
    metrics = T.evaluate(params, config, ex, tok, args.max_length, progress="eval")
    row = {"model": str(args.model), "task": task.name, "split": args.split, **metrics}
    print(json.dumps(row))
    write_json(args.json, row)
    return 0


# ---------------------------------------------------------------------------------------
# refimpl distill
# ---------------------------------------------------------------------------------------


def distill(args: argparse.Namespace) -> int:
    """`refimpl distill`: two-stage distillation of a student variant from a fine-tuned teacher."""
    from refimpl.bert import distill as D  # lazy: keeps `refimpl --help` instant
    from refimpl.bert import glue
    from refimpl.bert import train as T

    task = glue.TASKS[args.task]
    glue_dir(args)
    try:
        tconfig, tparams, tok = T.load_model(args.teacher, task)
    except (FileNotFoundError, ValueError) as err:
        return _fail("refimpl distill", err)
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
    name = (f"distill-{task.name}-{sconfig.attention}-{sconfig.activation}-L{len(layer_map)}-s{args.seed}"
            + (f"-qinit{args.quad_init}" if args.quad_init else "")
            + ("" if args.stage1_target == "scores" else f"-{args.stage1_target}")
            + (f"-anneal{args.anneal_epochs:g}" if args.anneal_epochs else ""))
    run_dir = Path(args.run_dir) if args.run_dir else T.DEFAULT_RUNS / name
    t0 = time.time()
    params = D.distill(tconfig, tparams, sconfig, layer_map, task, ids, types, train_ex.labels, s1, s2,
                       pad_id=tok.pad_id, run_dir=run_dir, quad_init_rows=args.quad_init,
                       stage1_target=args.stage1_target, anneal_epochs=args.anneal_epochs,
                       log=lambda s: print(s, flush=True))
    dev = glue.load(task.name, args.glue_dir, "dev")
    metrics = T.evaluate(params, sconfig, dev, tok, 128, progress="dev")
    print(json.dumps({"task": task.name, **metrics, "seconds": round(time.time() - t0, 1)}))
    if args.out:
        T.save_model(args.out, sconfig, params, tok)
    if args.json:
        T.write_result(args.json, {
            "command": T.command_line("refimpl distill", _argv(args)), "task": task.name,
            "attention": sconfig.attention, "activation": sconfig.activation, "layers": sconfig.num_hidden_layers,
            "layer_map": layer_map, "distilled": True, "train_examples": len(train_ex), "subset": args.subset,
            "quad_init_rows": args.quad_init, "stage1_target": args.stage1_target,
            "anneal_epochs": args.anneal_epochs,
            "stage1": None if s1 is None else asdict(s1), "stage2": None if s2 is None else asdict(s2),
            "metrics": metrics})
    return 0


# ---------------------------------------------------------------------------------------
# refimpl fit-freediv
# ---------------------------------------------------------------------------------------


def freediv_kind(attention: str) -> str:
    """The denominator a model's attention sums: 'softmax' (exp) or '2quad' ((s + c)^2), from its attention variant."""
    for kind in FREEDIV_KINDS:
        if attention.startswith(kind):
            return kind
    raise UserError(f"fit-freediv: attention {attention!r} has no freeDiv denominator of its own; give --kind "
                    f"({' or '.join(FREEDIV_KINDS)})")


def fit_freediv(args: argparse.Namespace) -> int:
    """`refimpl fit-freediv`: fit f(n) = a n^b to a model's attention denominators, beside the paper's."""
    from refimpl.bert import freediv, glue, shipped  # lazy: keeps `refimpl --help` instant
    from refimpl.bert import train as T

    task = glue.TASKS[args.task]
    glue_dir(args)
    names = args.model or list(shipped.NAMES[:2])  # the shipped softmax model and its 2Quad student
    labels = args.label or []
    if len(labels) > len(names):
        raise UserError(f"fit-freediv: {len(labels)} --label for {len(names)} models; give one --label per --model")
    models = []
    try:
        for i, name in enumerate(names):
            config, params, tok = T.load_model(name, task)
            kind = args.kind or freediv_kind(config.attention)
            label = labels[i] if i < len(labels) else Path(name).name
            models.append((label, config, params, tok, kind))
    except (FileNotFoundError, ValueError) as err:
        return _fail("refimpl fit-freediv", err)
    ex = glue.load(task.name, args.glue_dir, args.split)
    ex = ex.subset(T.subset_index(len(ex), args.subset, 0))
    fits = {}
    for label, config, params, tok, kind in models:
        ids, types = T.encoded(ex, tok, args.max_length)
        rec = freediv.record_denominators(params, config, ids, types, kind, pad_id=tok.pad_id)
        try:
            a, b = freediv.fit(rec, args.min_count)
        except ValueError as err:  # too few sentence lengths: the user's data or --min-count
            raise UserError(f"fit-freediv: {label}: {err}") from None
        pa, pb = freediv.PAPER[kind]
        fits[label] = {"kind": kind, "attention": config.attention, "a": a, "b": b, "paper": [pa, pb],
                       "records": {str(n): [z, c] for n, (z, c) in rec.items()}}
        print(f"{label:40s} {kind:8s} a = {a:9.4f}  b = {b:.4f}    paper: a = {pa:.4f}  b = {pb:.4f}")
    out = Path(args.json) if args.json else repo_path("results", "bert", "freediv_fit.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": T.command_line("refimpl fit-freediv", _argv(args)), "task": task.name,
              "split": args.split, "examples": len(ex), "fits": fits}
    out.write_text(json.dumps(record, indent=1) + "\n")
    png = out.with_suffix(".png")
    if freediv.plot(png, fits):
        print(f"wrote {out} and {png}")
    else:
        print(f"wrote {out}; matplotlib is not installed, so no plot (pip install 'refimpl[plot]')")
    return 0


# ---------------------------------------------------------------------------------------
# refimpl ship
# ---------------------------------------------------------------------------------------


def ship(args: argparse.Namespace) -> int:
    """`refimpl ship`: build the shipped models (refimpl.reproduce.ship), then the model owner's NEXUS
    ranges of each, calibrated on the GLUE SST-2 training set (refimpl.cli.nexus.calibrate; here, because
    bert imports no nexus)."""
    from refimpl.bert import shipped  # lazy: keeps `refimpl --help` instant
    from refimpl.reproduce import ship as build

    glue_dir(args)
    args.results = args.results or str(repo_path("results", "accuracy"))
    if min(args.teacher_subset, args.small_subset, args.student_subset) < 0:
        args.parser.error("subsets are row counts (0: the whole training set)")
    rc = build.build(args, _argv(args))
    if rc:
        return rc
    tsv = Path(args.glue_dir) / "SST-2" / "train.tsv"
    out = Path(args.out) if args.out else shipped.MODELS_DIR
    for name in shipped.NAMES:
        rc = nexus.calibrate(str(out / name), str(tsv))  # `refimpl nexus calibrate`
        if rc:
            return rc
    return 0


# ---------------------------------------------------------------------------------------
# The parsers
# ---------------------------------------------------------------------------------------


def register(sub) -> None:
    """Add train, distill, fit-freediv, eval and ship to the `refimpl` parser."""
    runs = "$REFIMPL_RUNS or ~/.cache/refimpl/runs"
    p = sub.add_parser("train", help="fine-tune a BERT classifier on a GLUE task", description=train.__doc__)
    p.add_argument("--task", choices=TASKS, default="SST-2")
    add_glue_dir(p)
    p.add_argument("--model", default=None, help=f"{MODEL_HELP} (default: all-MiniLM-L6-v2)")
    p.add_argument("--attention", default=None, help="attention variant (default: the model's)")
    p.add_argument("--activation", default=None, help="activation (default: the model's)")
    p.add_argument("--layers", default=None, help="layer map, e.g. 0,1: keep these layers in this order")
    p.add_argument("--subset", type=int, default=None, help="use a fixed random subset of the training set")
    p.add_argument("--run-dir", default=None, help=f"checkpoints (default {runs}/<name>)")
    p.add_argument("--out", default=None, help="save the final model here (model.safetensors + config)")
    add_json(p, help="write the dev metric as JSON here")
    p.add_argument("--name", default=None, help="run name (default from task and variants)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps with linear warmup")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=None, help="tokens per row (default 64 SST-2, 128 pairs)")
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--dropout", type=float, default=0.1, help="BERT training dropout (0 turns it off)")
    p.set_defaults(func=train)

    p = sub.add_parser("distill", help="two-stage distillation into an MPC-friendly student",
                       description=distill.__doc__)
    p.add_argument("--teacher", required=True, help=f"fine-tuned teacher: {MODEL_HELP} (refimpl train --out)")
    p.add_argument("--task", choices=TASKS, default="SST-2")
    add_glue_dir(p)
    p.add_argument("--attention", default="2quad-freediv")
    p.add_argument("--activation", default="quad")
    p.add_argument("--freediv-a", type=float, default=None)
    p.add_argument("--freediv-b", type=float, default=None)
    p.add_argument("--layers", default=None, help="layer map: student layer i <- teacher layer map[i] (default all)")
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--stage1-epochs", type=float, default=1.0)
    p.add_argument("--stage2-epochs", type=float, default=1.0)
    p.add_argument("--stage1-lr", type=float, default=STAGE1_LR)
    p.add_argument("--stage2-lr", type=float, default=STAGE2_LR)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--quad-init", type=int, default=0, metavar="ROWS",
                   help="ours: start from quad_init of the teacher fitted on ROWS training rows (0: the teacher as is)")
    p.add_argument("--stage1-target", choices=STAGE1_TARGETS, default="scores",
                   help="stage 1 matches the pre-softmax scores (MPCFormer), the attention probabilities (ours), "
                        "or the hidden states only (ours)")
    p.add_argument("--anneal-epochs", type=float, default=0.0, metavar="E",
                   help="ours: over stage 1's first E epochs the student's attention slides from softmax to its "
                        "variant (0: the variant from the start)")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--out", default=None)
    add_json(p, help="write the dev metric as JSON here")
    p.set_defaults(func=distill)

    p = sub.add_parser("fit-freediv", help="fit the public attention denominator f(n) = a n^b",
                       description=fit_freediv.__doc__)
    add_glue_dir(p)
    p.add_argument("--task", choices=TASKS, default="SST-2")
    p.add_argument("--split", default="dev")
    p.add_argument("--model", action="append", default=None,
                   help=f"{MODEL_HELP} (repeatable; default: the two shipped models)")
    p.add_argument("--kind", choices=FREEDIV_KINDS, default=None,
                   help="the denominator to record (default: from each model's attention: softmax* -> softmax, "
                        "2quad* -> 2quad)")
    p.add_argument("--label", action="append", default=None,
                   help="the name of each --model in the output, in order (default: the model's name or directory name)")
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--min-count", type=int, default=5)
    add_json(p, help="the fits as JSON, a PNG beside it (default: results/bert/freediv_fit.json in the repository)")
    p.set_defaults(func=fit_freediv)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a GLUE dev set", description=evaluate.__doc__)
    p.add_argument("model", help=f"{MODEL_HELP} (model.safetensors + config + vocab.txt)")
    p.add_argument("--task", choices=TASKS, default="SST-2")
    add_glue_dir(p)
    p.add_argument("--split", default="dev")
    p.add_argument("--max-length", type=int, default=128)
    add_json(p, help="also write the metrics as JSON to this file")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("ship", help="build the shipped small models and their NEXUS ranges", description=ship.__doc__)
    add_glue_dir(p)
    p.add_argument("--out", default=None, help="where the model directories go (default: refimpl/models)")
    p.add_argument("--run-dir", default=None,
                   help=f"checkpoints (never committed; default {runs}): the teacher as the accuracy table's, "
                        "the rest under ship/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher-subset", type=int, default=8000, help="SST-2 training rows (0: all)")
    p.add_argument("--teacher-epochs", type=float, default=1.0)
    p.add_argument("--results", default=None,
                   help="where the teacher's result (teacher-shipped_SST-2.json) goes (default: results/accuracy "
                        "in the repository)")
    p.add_argument("--layers", default="0,1", help="small model's layer map: student i <- teacher map[i]")
    p.add_argument("--small-subset", type=int, default=16000, help="0: all")
    p.add_argument("--small-epochs", type=float, default=1.0)
    p.add_argument("--small-lr", type=float, default=8e-5)
    p.add_argument("--student-subset", type=int, default=8000, help="0: all")
    p.add_argument("--stage1-epochs", type=float, default=1.0)
    p.add_argument("--stage1-lr", type=float, default=STAGE1_LR)
    p.add_argument("--stage2-epochs", type=float, default=1.0)
    p.add_argument("--stage2-lr", type=float, default=STAGE2_LR)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--quad-init", type=int, default=0, metavar="ROWS",
                   help="ours: start the student from quad_init of the small model on ROWS training rows "
                        "(0: the plain swap)")
    p.set_defaults(func=ship, parser=p)
