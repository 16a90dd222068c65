"""The shipped small SST-2 models and the one command that builds them: `refimpl ship`.

Two models live under refimpl/models/<name>/ (model.safetensors in float16, config.json
= BertConfig.to_json, vocab.txt of the pruned vocabulary, meta.json with the provenance):

- sst2-small-softmax-gelu: 2 layers of all-MiniLM-L6-v2 (hidden 384, 12 heads,
  intermediate 1536), Softmax + exact GELU, [CLS] linear head (no tanh pooler). What NEXUS
  runs, as in its paper.
- sst2-small-2quad-freediv-quad: its 2Quad-freeDiv + Quad student (MPCFormer two-stage
  distillation, freeDiv's f(n) = a n^b fitted on the small model). What the freeDiv paper
  runs under ABY3.

How `refimpl ship --glue-dir DIR` makes them (DESIGN.md section 6; every step seeded and
checkpointed under --run-dir, so an interrupted build resumes):
1. vocabulary: the MiniLM WordPiece ids of every SST-2 train + dev sentence plus the
   specials; the embedding table keeps those rows (WordPiece is greedy longest-match, so
   these sentences tokenize to the same pieces);
2. teacher: the 6-layer MiniLM + a [CLS] head fine-tuned on a fixed SST-2 training subset
   (the default-recipe teacher row of `refimpl reproduce accuracy`, same checkpoint; its
   result goes to results/accuracy/teacher-shipped_SST-2.json, never over the table's
   teacher_SST-2.json);
3. small model: layer map student 0 <- teacher 0, student 1 <- teacher 1, head copied,
   then trained by soft cross-entropy (T = 1) on the teacher's logits (MPCFormer stage 2);
4. student: the small model's weights with 2Quad-freeDiv attention and Quad activation, a, b
   fitted by `freediv.fit` on the small model run with 2Quad, then stage 1 (score + hidden
   MSE, 1:1) and stage 2 (soft CE) from the small model.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from refimpl.bert.config import BertConfig
from refimpl.bert.model import Params, forward
from refimpl.bert.tokenizer import BertTokenizer
from refimpl.errors import UserError

NAMES = ("sst2-small-softmax-gelu", "sst2-small-2quad-freediv-quad")
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
TEACHER_RESULT = "teacher-shipped_SST-2.json"  # not teacher_SST-2.json: that is the accuracy table's teacher
TEACHER_NOTE = "the shipped models' teacher (refimpl/models/*/meta.json)"
FILES = ("model.safetensors", "config.json", "vocab.txt")
MAX_BYTES = 20 * 2**20  # the issue's ~20 MB per model
FIXTURE_SENTENCES = (  # predictions recorded in meta.json, checked by tests/bert/test_shipped.py
    "it 's a charming and often affecting journey . ",
    "unflinchingly bleak and desperate ",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales . ",
    "a gorgeous , witty , seductive movie .",
    "the movie is a disaster from start to finish .",
)


@dataclass(frozen=True)
class ShippedModel:
    """A shipped model: config, float32 parameters, tokenizer over its pruned vocabulary, provenance."""

    name: str
    config: BertConfig
    params: dict[str, np.ndarray]
    tokenizer: BertTokenizer
    meta: dict


def model_dir(name: str) -> Path:
    """refimpl/models/<name>; the name must be one of NAMES."""
    if name not in NAMES:
        raise UserError(f"unknown shipped model {name!r}; expected one of {NAMES} (or a model directory)")
    return MODELS_DIR / name


def available(name: str) -> bool:
    """True when all files of the model are present."""
    d = model_dir(name)
    return all((d / f).exists() for f in FILES)


def load(name: str) -> ShippedModel:
    """Read refimpl/models/<name>/{model.safetensors, config.json, vocab.txt} (weights as float32)."""
    from refimpl.bert import weights

    d = model_dir(name)
    missing = [f for f in FILES if not (d / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"shipped model {name!r} lacks {missing} in {d}: build it with "
            f"`refimpl ship --glue-dir <GLUE directory holding SST-2/>`")
    config, params = weights.load(d, dtype=np.float32)
    meta_path = d / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return ShippedModel(name, config, params, BertTokenizer(d / "vocab.txt"), meta)


def encode(model: ShippedModel, sentence: str, max_length: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids [n], attention_mask [n]) of [CLS] sentence [SEP], truncated to max_length, no padding."""
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 for [CLS] and [SEP], got {max_length}")
    ids, _ = model.tokenizer.encode(sentence, max_length=max_length)
    ids_arr = np.array(ids, np.int64)
    return ids_arr, np.ones_like(ids_arr)


def predict(model: ShippedModel, sentence: str) -> np.ndarray:
    """Plaintext logits [num_labels] of one sentence (refimpl.bert.model.forward)."""
    ids, mask = encode(model, sentence)
    return forward(model.params, model.config, ids[None], None, mask[None]).logits[0]


# ---------------------------------------------------------------------------------------
# Building: `refimpl ship`
# ---------------------------------------------------------------------------------------


def save_shipped(out: Path, config: BertConfig, params: Params, vocab: list[str], meta: dict) -> Path:
    """Write model.safetensors (float16), config.json, vocab.txt, meta.json."""
    from refimpl.bert.model import check_params
    from refimpl.bert.train import write_vocab

    check_params(config, params)
    if config.vocab_size != len(vocab):
        raise ValueError(f"config vocab_size {config.vocab_size} but {len(vocab)} tokens")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v.astype(np.float16)) for k, v in params.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "refimpl-bert"})
    (out / "config.json").write_text(config.to_json() + "\n")
    write_vocab(out / "vocab.txt", vocab)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def fixture_logits(config: BertConfig, params: Params, tok: BertTokenizer) -> list[list]:
    """[sentence, logits] for FIXTURE_SENTENCES (recorded so tests can check a loaded model)."""
    rows = []
    for s in FIXTURE_SENTENCES:
        ids, _ = tok.encode(s, max_length=128)
        logits = forward(params, config, np.array([ids]), None, None).logits[0]
        rows.append([s, [float(x) for x in logits]])
    return rows


def _fp16(params: Params) -> Params:
    """The parameters as they are after the float16 round trip of the shipped file."""
    return {k: v.astype(np.float16).astype(np.float32) for k, v in params.items()}


def main(argv: list[str]) -> int:
    """`refimpl ship`: build both shipped SST-2 models from MiniLM (teacher, small model, student)."""
    from refimpl.bert import distill as D
    from refimpl.bert import freediv, glue
    from refimpl.bert import train as T
    from refimpl.reproduce import accuracy

    p = argparse.ArgumentParser(prog="refimpl ship", description=main.__doc__)
    p.add_argument("--glue-dir", required=True, help="GLUE directory holding SST-2/{train,dev}.tsv")
    p.add_argument("--out", default=str(MODELS_DIR), help="where the model directories go")
    p.add_argument("--run-dir", default=str(T.DEFAULT_RUNS),
                   help="checkpoints (never committed): the teacher as the accuracy table's, the rest under ship/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher-subset", type=int, default=8000, help="SST-2 training rows (0: all)")
    p.add_argument("--teacher-epochs", type=float, default=1.0)
    p.add_argument("--results", default="results/accuracy", help=f"where the teacher's result ({TEACHER_RESULT}) goes")
    p.add_argument("--layers", default="0,1", help="small model's layer map: student i <- teacher map[i]")
    p.add_argument("--small-subset", type=int, default=16000, help="0: all")
    p.add_argument("--small-epochs", type=float, default=1.0)
    p.add_argument("--small-lr", type=float, default=8e-5)
    p.add_argument("--student-subset", type=int, default=8000, help="0: all")
    p.add_argument("--stage1-epochs", type=float, default=1.0)
    p.add_argument("--stage1-lr", type=float, default=D.STAGE1_LR)
    p.add_argument("--stage2-epochs", type=float, default=1.0)
    p.add_argument("--stage2-lr", type=float, default=D.STAGE2_LR)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--quad-init", type=int, default=0, metavar="ROWS",
                   help="start the student from distill.quad_init of the small model on ROWS training rows (0: the plain swap)")
    args = p.parse_args(argv)
    if min(args.teacher_subset, args.small_subset, args.student_subset) < 0:
        p.error("subsets are row counts (0: the whole training set)")
    whole = lambda n: None if n == 0 else n  # noqa: E731
    log = lambda s: print(s, flush=True)  # noqa: E731
    t0 = time.time()
    task = glue.TASKS["SST-2"]
    train_all = glue.load("SST-2", args.glue_dir, "train")
    dev = glue.load("SST-2", args.glue_dir, "dev")

    # 1.-2. vocabulary pruned to SST-2 train + dev; teacher = the accuracy table's teacher row
    command = T.command_line("refimpl ship", argv)
    config, teacher, tok, trecord = accuracy.train_teacher(
        "SST-2", args.glue_dir, seed=args.seed, subset=whole(args.teacher_subset), epochs=args.teacher_epochs,
        runs=Path(args.run_dir), command=command, root=Path(args.results), log=log,
        result_name=TEACHER_RESULT, note=TEACHER_NOTE)
    # checkpoints keyed by the teacher and the data sizes (a run dir's schedule check covers epochs and lr)
    run = Path(args.run_dir) / "ship" / trecord.get("run", "teacher")
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
    small = _fp16(small)
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
    student = _fp16(student)
    student_acc = T.evaluate(student, student_config, dev, tok, 128, progress="dev")["accuracy"]
    log(f"student SST-2 dev accuracy {student_acc:.4f}")

    common = {"command": command, "seed": args.seed, "base": "sentence-transformers/all-MiniLM-L6-v2",
              "vocabulary": f"MiniLM WordPiece pruned to the {len(vocab) - 5} pieces of SST-2 train + dev, plus 5 specials",
              "max_length_train": args.max_length,
              "teacher": {"layers": config.num_hidden_layers, "train_examples": trecord.get("train_examples", args.teacher_subset),
                          "schedule": trecord["schedule"], "dev_accuracy": teacher_acc},
              "seconds": round(time.time() - t0)}
    out = Path(args.out)
    small_meta = common | {
        "name": NAMES[0], "layer_map": {"student layer i <- teacher layer": layer_map},
        "training": {"how": "soft cross-entropy (T = 1) on the teacher's logits (MPCFormer stage 2)",
                     "train_examples": small_examples, "schedule": asdict(s_small)},
        "dev_accuracy": small_acc, "dev_examples": len(dev),
        "fixture_logits": fixture_logits(small_config, small, tok)}
    student_meta = common | {
        "name": NAMES[1], "distilled_from": NAMES[0], "layer_map": {"student layer i <- small layer": identity},
        "freediv_fit": {"a": a, "b": b, "how": "freediv.fit on the small model run with 2Quad, 4000 training sentences"},
        "training": {"how": "MPCFormer two-stage distillation: stage 1 score + hidden MSE 1:1, stage 2 soft CE T = 1"
                            + (", from distill.quad_init of the small model (ours)" if args.quad_init else ""),
                     "train_examples": student_examples,
                     "quad_init_rows": args.quad_init, "stage1": asdict(s1), "stage2": asdict(s2)},
        "dev_accuracy": student_acc, "dev_examples": len(dev),
        "fixture_logits": fixture_logits(student_config, student, tok)}
    for name, c, prm, meta in ((NAMES[0], small_config, small, small_meta), (NAMES[1], student_config, student, student_meta)):
        (out / name / "nexus_ranges.json").unlink(missing_ok=True)  # the previous weights' (`refimpl ship` redoes them)
        d = save_shipped(out / name, c, prm, vocab, meta)
        size = (d / "model.safetensors").stat().st_size
        log(f"wrote {d} ({size / 2**20:.1f} MiB), dev accuracy {meta['dev_accuracy']:.4f}")
    return 0
