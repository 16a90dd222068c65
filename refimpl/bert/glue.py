"""GLUE SST-2, STS-B and RTE: readers, metrics, and batches bucketed by length.

Files are the GLUE TSVs (`<data_dir>/<TASK>/{train,dev}.tsv`), read tab-separated with
quoting off: STS-B has stray quotes that CSV quoting would merge across rows (DESIGN.md
section 6). Dev sets serve as test sets, as in MPCFormer.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from refimpl.bert.tokenizer import Batch, BertTokenizer, pad
from refimpl.errors import UserError


@dataclass(frozen=True)
class Task:
    """Where a task's columns are and what its label means (GLUE, Wang et al. 2019)."""

    name: str
    text_a: str  # header name of the first sentence
    text_b: str | None  # second sentence of a pair task
    label: str
    labels: tuple[str, ...] | None  # class names in id order; None: a regression score
    metrics: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        """Classes, or 1 for a regression task (the head's output size)."""
        return 1 if self.labels is None else len(self.labels)


TASKS = {
    "SST-2": Task("SST-2", "sentence", None, "label", ("0", "1"), ("accuracy",)),
    "STS-B": Task("STS-B", "sentence1", "sentence2", "score", None, ("pearson", "spearman")),
    "RTE": Task("RTE", "sentence1", "sentence2", "label", ("entailment", "not_entailment"), ("accuracy",)),
}


@dataclass(frozen=True)
class Examples:
    """One split of one task: texts and labels (class ids int64, or float64 scores)."""

    task: Task
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray

    def __len__(self) -> int:
        """Number of examples."""
        return len(self.text_a)

    def subset(self, index: Sequence[int] | np.ndarray) -> Examples:
        """The examples at `index` (a data subset for quick runs)."""
        index = np.asarray(index, dtype=np.int64)
        return Examples(self.task, [self.text_a[i] for i in index],
                        None if self.text_b is None else [self.text_b[i] for i in index],
                        self.labels[index])


def read_tsv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a GLUE TSV as dicts by header name, tab-separated, quoting off."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path}: empty (a GLUE TSV starts with a header line)")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise UserError(f"{path}:{lineno}: {len(row)} fields, header has {len(header)}")
            rows.append(dict(zip(header, row)))
    return rows


def load(task: str, data_dir: str | Path, split: str = "dev") -> Examples:
    """Read `<data_dir>/<task>/<split>.tsv` of SST-2, STS-B or RTE."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(TASKS)}")
    t = TASKS[task]
    path = Path(data_dir) / task / f"{split}.tsv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: pass the GLUE directory that holds {task}/{split}.tsv")
    rows = read_tsv(path)
    if not rows:
        raise UserError(f"{path}: no examples after the header")
    missing = [c for c in (t.text_a, t.text_b, t.label) if c is not None and c not in rows[0]]
    if missing:
        raise UserError(f"{path}: no column {missing[0]!r} in the header")
    a = [r[t.text_a] for r in rows]
    b = None if t.text_b is None else [r[t.text_b] for r in rows]
    if t.labels is None:
        try:
            labels = np.array([float(r[t.label]) for r in rows], np.float64)
        except ValueError as e:
            raise UserError(f"{path}: a {t.label} that is not a number ({e})") from None
    else:
        ids = {name: i for i, name in enumerate(t.labels)}
        bad = next((i for i, r in enumerate(rows) if r[t.label] not in ids), None)
        if bad is not None:
            raise UserError(f"{path}:{bad + 2}: label {rows[bad][t.label]!r}, expected one of {tuple(t.labels)}")
        labels = np.array([ids[r[t.label]] for r in rows], np.int64)
    return Examples(t, a, b, labels)


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of equal entries (GLUE SST-2, RTE)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float((predictions == labels).mean())


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation cov(x, y) / (sd x sd y) (GLUE STS-B)."""
    x = np.asarray(x, np.float64) - np.mean(x)
    y = np.asarray(y, np.float64) - np.mean(y)
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata 'average')."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])  # first index of each tie group
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation: Pearson of the average ranks (GLUE STS-B)."""
    return pearson(rankdata(x), rankdata(y))


def evaluate(task: Task, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics from head outputs [N, num_labels] (argmax, or the score itself)."""
    outputs = np.asarray(outputs)
    if task.labels is None:
        scores = outputs.reshape(len(outputs), -1)[:, 0]
        return {"pearson": pearson(scores, labels), "spearman": spearman(scores, labels)}
    return {"accuracy": accuracy(outputs.argmax(axis=-1), labels)}


# ---------------------------------------------------------------------------------------
# Batches bucketed by length
# ---------------------------------------------------------------------------------------


def bucket_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
) -> Iterator[np.ndarray]:
    """Index batches of similar lengths: sort by length (random order among equals), cut, shuffle batches.

    Padding to each batch's longest row then wastes little (DESIGN.md section 6: an SST-2
    epoch drops from ~46 to ~13 minutes). Without rng the order is deterministic (evaluation).
    Every index appears exactly once.
    """
    lengths = np.asarray(lengths)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tie = np.arange(len(lengths)) if rng is None else rng.permutation(len(lengths))
    order = np.lexsort((tie, lengths))  # by length, ties by `tie`
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    yield from batches


def encode(examples: Examples, tokenizer: BertTokenizer, max_length: int = 128) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and type ids of every example ([CLS] A [SEP] (B [SEP]), longest-first to max_length)."""
    rows = tokenizer.batch_rows(examples.text_a, examples.text_b, max_length)
    return [r[0] for r in rows], [r[1] for r in rows]


def batches(
    examples: Examples,
    tokenizer: BertTokenizer,
    batch_size: int,
    *,
    max_length: int = 128,
    rng: np.random.Generator | None = None,
) -> Iterator[tuple[Batch, np.ndarray, np.ndarray]]:
    """(model inputs padded to the batch's longest row, labels, example indices), bucketed by length."""
    ids, types = encode(examples, tokenizer, max_length)
    for index in bucket_batches([len(r) for r in ids], batch_size, rng):
        yield pad([ids[i] for i in index], [types[i] for i in index], tokenizer.pad_id), examples.labels[index], index
