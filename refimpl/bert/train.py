"""Fine-tuning and evaluation of the numpy BERT on GLUE (the commands: `refimpl train`, `refimpl eval`).

The loop (BERT §4 fine-tuning, as the Hugging Face trainer MPCFormer uses): batches bucketed
by length, AdamW with no decay on bias/LayerNorm, linear warmup then linear decay, a seed
for everything random, a tqdm progress bar, and a checkpoint (parameters, optimizer state,
step) under a run directory from which an interrupted run resumes to the same parameters
as an uninterrupted one (batch order and dropout masks are functions of (seed, epoch, step)).

Model surgery used by training and distillation lives here too: a stated layer map
(student layer i <- teacher layer map[i]) and vocabulary pruning to a task's tokens.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from refimpl.bert import glue, shipped, weights
from refimpl.bert.config import BertConfig
from refimpl.bert.model import Params, backward, check_params, forward
from refimpl.bert.optim import AdamW, constant_schedule, linear_schedule
from refimpl.bert.tokenizer import SPECIAL, Batch, BertTokenizer, minilm_tokenizer, pad

DEFAULT_RUNS = Path(os.environ.get("REFIMPL_RUNS", Path.home() / ".cache" / "refimpl" / "runs"))
CHECKPOINT = "checkpoint.safetensors"
STATE = "state.json"

# ---------------------------------------------------------------------------------------
# Losses: value and gradient with respect to the logits
# ---------------------------------------------------------------------------------------


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log p = x - max - log sum exp(x - max) over the last axis."""
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean -log p[label] over the batch and d loss / d logits = (p - onehot) / B (BERT classification)."""
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match as [B, C] and [B]")
    lp = log_softmax(logits)  # [B, C]
    bsz = logits.shape[0]
    loss = -float(lp[np.arange(bsz), labels].mean())
    d = np.exp(lp)
    d[np.arange(bsz), labels] -= 1.0
    return loss, d / bsz


def soft_cross_entropy(logits: np.ndarray, teacher_logits: np.ndarray, temperature: float = 1.0) -> tuple[float, np.ndarray]:
    """Mean -sum softmax(t / T) log softmax(s / T) and its gradient (MPCFormer stage 2, T = 1)."""
    if logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {logits.shape} and teacher logits {teacher_logits.shape} differ")
    pt = np.exp(log_softmax(teacher_logits / temperature))  # [B, C]
    ls = log_softmax(logits / temperature)
    bsz = logits.shape[0]
    loss = -float((pt * ls).sum(axis=-1).mean())
    return loss, ((np.exp(ls) - pt) / (temperature * bsz)).astype(logits.dtype, copy=False)


def mse(pred: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Mean of w (pred - target)^2 over the entries with weight (sum w normalises) and its gradient.

    weight broadcasts against pred (e.g. a 0/1 mask of real tokens); None means all entries.
    """
    diff = pred - target
    if weight is None:
        count = float(diff.size)
        wd = diff
    else:
        w = np.broadcast_to(weight, diff.shape)
        count = float(w.sum())
        if count <= 0:
            raise ValueError("mse with an all-zero weight")
        wd = diff * w
    loss = float((wd * diff).sum()) / count
    return loss, (2.0 / count) * wd


def task_loss(task: glue.Task, logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Cross-entropy for a classification task, MSE to the gold score for STS-B (BERT)."""
    if task.labels is None:
        loss, d = mse(logits[:, 0], labels.astype(logits.dtype))
        return loss, d[:, None].astype(logits.dtype, copy=False)
    loss, d = cross_entropy(logits, labels)
    return loss, d.astype(logits.dtype, copy=False)


# ---------------------------------------------------------------------------------------
# Model surgery: layer map, vocabulary pruning
# ---------------------------------------------------------------------------------------


def select_layers(config: BertConfig, params: Params, layer_map: Sequence[int]) -> tuple[BertConfig, Params]:
    """Student layer i <- teacher layer layer_map[i] (embeddings and head copied) (MPCFormer/TinyBERT-style init)."""
    layer_map = list(layer_map)
    if not layer_map or any(not 0 <= t < config.num_hidden_layers for t in layer_map):
        raise ValueError(f"layer map {layer_map} must name layers in 0..{config.num_hidden_layers - 1}")
    out = {k: v.copy() for k, v in params.items() if not k.startswith("encoder.layer.")}
    for i, t in enumerate(layer_map):
        src = f"encoder.layer.{t}."
        out |= {f"encoder.layer.{i}." + k[len(src):]: v.copy() for k, v in params.items() if k.startswith(src)}
    return config.replace(num_hidden_layers=len(layer_map)), out


def read_vocab(path: str | Path) -> list[str]:
    """Tokens of a vocab.txt, id = line number."""
    return Path(path).read_text(encoding="utf-8").splitlines()


def prune_vocabulary(
    config: BertConfig, params: Params, vocab: list[str], used_ids: np.ndarray | Sequence[int]
) -> tuple[BertConfig, Params, list[str]]:
    """Keep the special tokens and `used_ids` (in vocabulary order); the embedding rows follow.

    WordPiece is greedy longest-match-first, so a vocabulary that keeps every piece the full
    vocabulary produced for a text tokenizes that text to the same pieces.
    """
    keep = set(int(i) for i in used_ids) | {vocab.index(t) for t in SPECIAL}
    keep_ids = np.array(sorted(keep), np.int64)
    if keep_ids[-1] >= len(vocab):
        raise ValueError(f"token id {keep_ids[-1]} outside a vocabulary of {len(vocab)}")
    out = dict(params)
    out["embeddings.word_embeddings.weight"] = params["embeddings.word_embeddings.weight"][keep_ids].copy()
    return config.replace(vocab_size=len(keep_ids)), out, [vocab[i] for i in keep_ids]


def write_vocab(path: str | Path, tokens: list[str]) -> None:
    """vocab.txt: one token a line."""
    Path(path).write_text("\n".join(tokens) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------
# Inference over a dataset
# ---------------------------------------------------------------------------------------


def encoded(examples: glue.Examples, tokenizer: BertTokenizer, max_length: int) -> tuple[list[list[int]], list[list[int]]]:
    """Token and type ids of every example (glue.encode)."""
    return glue.encode(examples, tokenizer, max_length)


def token_capped(batches: list[np.ndarray], lengths: Sequence[int], max_tokens: int) -> list[np.ndarray]:
    """Split each batch so that rows x its longest row <= max_tokens (at least one row a batch): bounds memory."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    out = []
    for b in batches:
        rows = max(1, max_tokens // max(1, max(lengths[i] for i in b)))
        out += [b[k: k + rows] for k in range(0, len(b), rows)]
    return out


def predict(
    params: Params, config: BertConfig, ids: list[list[int]], types: list[list[int]], *,
    pad_id: int = 0, batch_size: int = 128, progress: str | None = None, max_tokens: int = 4096,
) -> np.ndarray:
    """Head outputs [N, num_labels] of every encoded row, in row order (length-bucketed batches).

    A batch holds at most max_tokens padded tokens (RTE at n = 128: 32 rows, the training
    batch; 128 rows would keep ~4 GiB of activations).
    """
    out = np.zeros((len(ids), config.num_labels), np.float64)
    lengths = [len(r) for r in ids]
    batches = token_capped(list(glue.bucket_batches(lengths, batch_size)), lengths, max_tokens)
    for index in _bar(batches, progress):
        b = pad([ids[i] for i in index], [types[i] for i in index], pad_id)
        out[index] = forward(params, config, b.input_ids, b.token_type_ids, b.attention_mask).logits
    return out


def evaluate(params: Params, config: BertConfig, examples: glue.Examples, tokenizer: BertTokenizer,
             max_length: int = 128, progress: str | None = None) -> dict[str, float]:
    """GLUE metrics of the model on `examples` (dev sets serve as test sets, as in MPCFormer)."""
    ids, types = encoded(examples, tokenizer, max_length)
    outputs = predict(params, config, ids, types, pad_id=tokenizer.pad_id, progress=progress)
    return glue.evaluate(examples.task, outputs, examples.labels)


def _bar(it, desc: str | None, total: int | None = None):
    """tqdm over `it` when desc is given and stderr is a terminal or REFIMPL_PROGRESS=1."""
    if desc is None:
        return it

    disable = not (sys.stderr.isatty() or os.environ.get("REFIMPL_PROGRESS") == "1")
    return tqdm(it, desc=desc, total=total, disable=disable, leave=False, mininterval=5.0)


# ---------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Hyperparameters of one training run (BERT fine-tuning; MPCFormer distillation stages)."""

    epochs: float = 1.0  # may be fractional: the last epoch stops early
    batch_size: int = 32
    lr: float = 5e-5
    warmup: float = 0.1  # fraction of the steps
    weight_decay: float = 0.01
    schedule: str = "linear"  # linear warmup/decay, or constant (after warmup)
    seed: int = 0
    max_length: int = 64
    save_every: int = 200  # steps between checkpoints
    dropout: float = 0.0  # BERT's 0.1 for fine-tuning; masks drawn from (seed, step)

    def __post_init__(self) -> None:
        """Validate the numbers once."""
        if self.epochs <= 0 or self.batch_size < 1 or self.lr < 0 or not 0 <= self.warmup < 1:
            raise ValueError(f"bad schedule {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.schedule not in ("linear", "constant"):
            raise ValueError(f"schedule {self.schedule!r} is not 'linear' or 'constant'")


# loss_fn(params, batch, labels, index, step) -> (loss, grads)
LossFn = Callable[[Params, Batch, np.ndarray, np.ndarray, int], tuple[float, Params]]


def epoch_batches(lengths: list[int], sched: Schedule, epoch: int) -> list[np.ndarray]:
    """The shuffled, length-bucketed batches of one epoch: a function of (seed, epoch) only."""
    rng = np.random.default_rng([sched.seed, epoch])
    return list(glue.bucket_batches(lengths, sched.batch_size, rng))


def total_steps(n_examples: int, sched: Schedule) -> int:
    """Optimizer steps of the run (fractional epochs round up to a whole batch)."""
    per_epoch = -(-n_examples // sched.batch_size)
    return max(1, int(np.ceil(per_epoch * sched.epochs)))


def train(
    params: Params,
    ids: list[list[int]],
    types: list[list[int]],
    labels: np.ndarray,
    loss_fn: LossFn,
    sched: Schedule,
    *,
    pad_id: int = 0,
    run_dir: str | Path | None = None,
    desc: str = "train",
    stop_after: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Params:
    """Run the schedule on the encoded rows, checkpointing to run_dir and resuming from it.

    stop_after: return after that many steps in this call (tests interrupt a run with it).
    Returns the trained parameters (the dict passed in is not modified).
    """
    params = {k: v.copy() for k, v in params.items()}
    opt = AdamW(lr=sched.lr, weight_decay=sched.weight_decay)
    total = total_steps(len(ids), sched)
    warmup = int(sched.warmup * total)
    lr_at = linear_schedule if sched.schedule == "linear" else constant_schedule
    step = 0
    earlier: float | None = 0.0  # training seconds of earlier calls on this run (None: not recorded)
    t_start = time.time()
    run_dir = None if run_dir is None else Path(run_dir)
    if run_dir is not None and (run_dir / STATE).exists():
        step = _resume(run_dir, params, opt, sched, total)
        earlier = trained_seconds(run_dir)
        if log:
            log(f"resumed {run_dir} at step {step}/{total}")
    lengths = [len(r) for r in ids]
    per_epoch = -(-len(ids) // sched.batch_size)
    done_here = 0
    bar = _bar(range(step, total), desc, total=total - step)
    losses: list[float] = []
    cached_epoch, order = -1, []
    for step in bar:
        epoch, k = divmod(step, per_epoch)
        if cached_epoch != epoch:
            cached_epoch, order = epoch, epoch_batches(lengths, sched, epoch)
        index = order[k]
        batch = pad([ids[i] for i in index], [types[i] for i in index], pad_id)
        loss, grads = loss_fn(params, batch, labels[index], index, step)
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss is {loss} at step {step}: lower the learning rate")
        opt.step(params, grads, lr_at(step, total, warmup))
        losses.append(loss)
        if hasattr(bar, "set_postfix") and step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if log and (step + 1) % 50 == 0:
            log(f"{desc} step {step + 1}/{total} loss {np.mean(losses[-50:]):.4f}")
        done_here += 1
        finished = step + 1 == total
        if run_dir is not None and ((step + 1) % sched.save_every == 0 or finished
                                    or (stop_after is not None and done_here >= stop_after)):
            _save(run_dir, params, opt, sched, step + 1,
                  None if earlier is None else earlier + time.time() - t_start)
        if stop_after is not None and done_here >= stop_after:
            break
    return params


def _save(run_dir: Path, params: Params, opt: AdamW, sched: Schedule, step: int, seconds: float | None = None) -> None:
    """Checkpoint: parameters and optimizer state (safetensors) + step, schedule and training seconds (JSON), written atomically.

    seconds: wall time of the steps so far, summed over every call that trained this run (a resumed
    run adds its own); None when an earlier call did not record it (a checkpoint of an older version).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"param/{k}": np.ascontiguousarray(v) for k, v in params.items()}
    tensors |= {f"opt/{k}": np.ascontiguousarray(v) for k, v in opt.state().items()}
    tmp = run_dir / (CHECKPOINT + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, run_dir / CHECKPOINT)
    state = {"step": step, "schedule": asdict(sched), "seconds": None if seconds is None else round(seconds, 1)}
    (run_dir / (STATE + ".tmp")).write_text(json.dumps(state, indent=1))
    os.replace(run_dir / (STATE + ".tmp"), run_dir / STATE)


def trained_seconds(run_dir: str | Path) -> float | None:
    """Training seconds of the checkpoint in run_dir over all the calls that made it; None if unrecorded or no checkpoint."""
    path = Path(run_dir) / STATE
    if not path.exists():
        return None
    seconds = json.loads(path.read_text()).get("seconds")
    return None if seconds is None else float(seconds)


def continues(stored: dict, sched: Schedule) -> bool:
    """True if a checkpoint of schedule `stored` is a prefix of a run of `sched`.

    Only a constant rate without warmup qualifies, differing from sched in its epochs alone:
    the learning rate does not depend on the total, and the batch order is a function of
    (seed, epoch), so a shorter run's steps are the first steps of the longer one.
    """
    new = asdict(sched)
    same = {k: v for k, v in stored.items() if k != "epochs"} == {k: v for k, v in new.items() if k != "epochs"}
    return same and sched.schedule == "constant" and sched.warmup == 0.0


def _resume(run_dir: Path, params: Params, opt: AdamW, sched: Schedule, total: int) -> int:
    """Load a checkpoint into params and opt; refuse one made with another schedule or past this run's end.

    A checkpoint of a longer constant-rate run is a prefix of this one only up to its `total` steps.
    """
    state = json.loads((run_dir / STATE).read_text())
    if state["schedule"] != asdict(sched) and not continues(state["schedule"], sched):
        raise ValueError(
            f"{run_dir} holds a checkpoint of another schedule {state['schedule']}; "
            f"this run is {asdict(sched)}: use another --run-dir or delete it")
    if int(state["step"]) > total:
        raise ValueError(f"{run_dir} holds a checkpoint at step {state['step']} of a {state['schedule']['epochs']:g}-epoch "
                         f"run, past the {total} steps of this {sched.epochs:g}-epoch run: use another --run-dir")
    raw = load_file(str(run_dir / CHECKPOINT))
    for k in params:
        if f"param/{k}" not in raw:
            raise KeyError(f"checkpoint {run_dir} lacks parameter {k!r}")
        params[k] = raw[f"param/{k}"].copy()
    opt.load_state({k[4:]: v for k, v in raw.items() if k.startswith("opt/")})
    return int(state["step"])


def finetune_loss(config: BertConfig, task: glue.Task, dropout: float = 0.0, seed: int = 0) -> LossFn:
    """The task loss on the model's logits (cross-entropy, or MSE for STS-B) with its gradient.

    dropout > 0: BERT's training dropout, masks from rng (seed, step), so a resumed run is identical.
    """

    def loss_fn(params: Params, batch: Batch, labels: np.ndarray, index: np.ndarray, step: int) -> tuple[float, Params]:
        rng = np.random.default_rng([seed, 7, step]) if dropout > 0 else None
        res = forward(params, config, batch.input_ids, batch.token_type_ids, batch.attention_mask,
                      dropout=dropout, rng=rng)
        loss, d = task_loss(task, res.logits, labels)
        return loss, backward(params, config, res, d)

    return loss_fn


# ---------------------------------------------------------------------------------------
# Loading a starting model for a task
# ---------------------------------------------------------------------------------------


def load_model(model: str | None, task: glue.Task, *, seed: int = 0, **overrides) -> tuple[BertConfig, Params, BertTokenizer]:
    """MiniLM (model None), a saved model directory or a shipped model's name, with a head for `task` and variants from overrides."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if model is None:
        config, params = weights.load(None, num_labels=task.num_labels, **overrides)
        tok = minilm_tokenizer()
    else:
        model = shipped.resolve(model)
        config, params = weights.load(model, **overrides)
        vocab = model / "vocab.txt"
        tok = BertTokenizer(vocab) if vocab.exists() else minilm_tokenizer()
    if "classifier.weight" not in params:
        params = weights.add_classifier(config.replace(num_labels=task.num_labels), params, np.random.default_rng(seed))
        config = config.replace(num_labels=task.num_labels)
    if config.num_labels != task.num_labels:
        raise ValueError(f"model has {config.num_labels} outputs, task {task.name} needs {task.num_labels}")
    check_params(config, params)
    return config, params, tok


def write_result(path: str | Path, record: dict) -> Path:
    """One JSON result file (command, seed, subset, epochs, metric ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def command_line(prog: str, argv: Sequence[str]) -> str:
    """The command as typed, for provenance."""
    return " ".join([prog, *(shlex.quote(a) for a in argv)])


def subset_index(n: int, size: int | None, seed: int) -> np.ndarray:
    """A fixed random subset of `size` of n rows (sorted), or all rows (the stated SST-2 subset)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 1234]).choice(n, size, replace=False))


def save_model(out: str | Path, config: BertConfig, params: Params, tok: BertTokenizer, dtype=None) -> Path:
    """weights.save plus the tokenizer's vocab.txt (a pruned vocabulary travels with its model)."""
    out = weights.save(out, config, params, dtype=dtype)
    vocab = [tok.wordpiece.id_to_token(i) for i in range(tok.vocab_size)]
    write_vocab(out / "vocab.txt", vocab)
    return out


def pruned_minilm(task: glue.Task, glue_dir: str | Path, run_dir: str | Path, *, seed: int = 0,
                  **overrides) -> tuple[BertConfig, Params, BertTokenizer]:
    """MiniLM with its vocabulary pruned to the task's train + dev pieces and a fresh head (seeded).

    The pruned model computes the same function as MiniLM on the task's sentences (see
    prune_vocabulary); AdamW and the embedding gradient then touch 2-3x fewer rows.
    The pruned vocab.txt is written to run_dir (the tokenizer reads it from there).
    """
    texts: list[str] = []
    for split in ("train", "dev"):
        ex = glue.load(task.name, glue_dir, split)
        texts += ex.text_a + (ex.text_b or [])
    full_tok = minilm_tokenizer()
    used = np.unique(np.concatenate([np.array(r, np.int64) for r in full_tok.pieces_batch(texts) if r]))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config, params = weights.load(None, num_labels=task.num_labels, **overrides)
    config, params, vocab = prune_vocabulary(config, params, read_vocab(weights.minilm_dir() / "vocab.txt"), used)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_vocab(run_dir / "vocab.txt", vocab)
    params = weights.add_classifier(config, params, np.random.default_rng(seed))
    return config, params, BertTokenizer(run_dir / "vocab.txt")
