"""The accuracy table of `refimpl reproduce accuracy`: result-file names and the table built from them.

One result file per (row, task, seed) under results/accuracy/ (named by result_path); `table`
reads them all and prints the Markdown table beside the papers' BERT-base figures (freeDiv's
and MPCFormer's, from refimpl/constants.toml). Running a row is refimpl/reproduce/accuracy.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refimpl.constants import C

RESULTS = Path(__file__).resolve().parents[2] / "results" / "accuracy"  # anchored to the repository, not the working directory
ROWS = {  # row -> (attention, activation)
    "teacher": ("softmax", "gelu"),
    "2quad-freediv-quad": ("2quad-freediv", "quad"),
    "2quad-quad": ("2quad", "quad"),
    "softmax-freediv-quad": ("softmax-freediv", "quad"),
    "2relu-relu": ("2relu", "relu"),
    "scaling-quad": ("scaling", "quad"),
    "2quad-freediv-gelu": ("2quad-freediv", "gelu"),  # ablation (ours): the attention replaced alone
    "softmax-quad": ("softmax", "quad"),  # ablation (ours): the activation replaced alone
    "2quad-gelu": ("2quad", "gelu"),  # ablation (ours): 2Quad alone, normalised by its row sum
    "softmax-freediv-gelu": ("softmax-freediv", "gelu"),  # ablation (ours): freeDiv's division alone
}
# listed in the table only where they have a result
ABLATIONS = {"2quad-freediv-gelu", "softmax-quad", "2quad-gelu", "softmax-freediv-gelu"}
TASK_KEYS = {"SST-2": "accuracy", "STS-B": "pearson", "RTE": "accuracy"}
PAPER_FREEDIV = {  # freeDiv, BERT-base, 2Quad-freeDiv + Quad, distilled
    "SST-2": C["freediv"]["sst2_accuracy"], "STS-B": C["freediv"]["stsb_pearson"], "RTE": C["freediv"]["rte_accuracy"]}
PAPER_MPCFORMER = {  # MPCFormer's BERT-base GLUE dev figures, [SST-2, STS-B, RTE]
    row: dict(zip(TASK_KEYS, values)) for row, values in C["distill"]["mpcformer_accuracy"].items() if row != "source"}
BATCH_SIZE = 32  # MPCFormer's (and every row's fine-tuning) batch
STAGE2_LR = C["distill"]["stage2_lr"]  # distill.STAGE2_LR (MPCFormer's): a record at another stage-2 rate says so in the table
AUGMENTS = {  # extra distillation inputs of distilled rows (ours, opt-in) -> the table's label
    "": "",
    "swap": "swap-pairs stage 1",  # ours.swap_pairs: stage 1 also on each pair in the other order
    "replace": "token-replaced copies",  # ours.replace_tokens: both stages (stage 2 of classification tasks)
    "transfer": "pairs of the other pair task",  # TRANSFER_FROM's training pairs, text only: as "replace"
    "neighbours": "neighbour-replaced copies",  # as "replace", a token's draw among its nearest pieces
}
REPLACE_COPIES, REPLACE_RATE = 3, 0.15  # --augment replace: noisy copies per row, share of tokens replaced
STAGE1_TARGET_LABELS = {"scores": "", "probs": "stage 1 on probabilities",
                        "hidden": "stage 1 on hidden states only"}  # --stage1-target -> the table's label


def result_path(row: str, mode: str, task: str, seed: int = 0, root: Path = RESULTS, quad_init: bool = False,
                augment: str = "", stage1_target: str = "scores", score_init: bool = False,
                dropout: bool = False, anneal: float = 0.0) -> Path:
    """results/accuracy/<row>[-distilled|-direct][-qinit][-sinit][-<augment>][-probs][-dropout][-anneal<E>]_<task>[_s<seed>].json.

    -qinit: started from ours.quad_init; -sinit: queries scaled by ours.score_scale_fit;
    -swap: stage 1 also on the swapped pairs (ours.swap_pairs);
    -replace: both stages also on token-replaced copies (ours.replace_tokens); -neighbours: the
    same with each token's draw among its nearest pieces (ours.neighbour_candidates); -transfer: both
    stages also on the training pairs of TRANSFER_FROM[task], their labels unread; -probs: stage 1
    matches attention probabilities, not scores (distill.stage1_terms); -dropout: the student
    distilled with BERT's dropout (MPCFormer's train mode); -anneal<E>: stage 1 slides the student's
    attention from softmax to its variant over its first E epochs (ours.softmax_share).
    """
    stem = row if row == "teacher" else (f"{row}-{mode}{'-qinit' if quad_init else ''}{'-sinit' if score_init else ''}"
                                         f"{f'-{augment}' if augment else ''}")
    stem += ("" if stage1_target == "scores" else f"-{stage1_target}") + ("-dropout" if dropout else "")
    stem += f"-anneal{anneal:g}" if anneal else ""
    return root / f"{stem}_{task}{'' if seed == 0 else f'_s{seed}'}.json"


def teacher_run(root: Path, task: str, seed: int) -> str:
    """The run name of the teacher row's record for (task, seed) (the default run when it names none)."""
    path = result_path("teacher", "fine-tuned", task, seed, root)
    run = json.loads(path.read_text()).get("run") if path.exists() else None
    return run or f"accuracy-teacher-{task}-s{seed}"


@dataclass
class Records:
    """The result files of one folder, read: what `table` prints (and `refimpl plot` draws)."""

    cells: dict[tuple[str, str], dict[str, list[float]]]  # (row, mode) -> task -> values in %, one per seed
    epochs: dict[tuple[str, str], set[str]]
    stale: dict[tuple[str, str], set[str]]  # cells whose teacher is not the teacher row's current one
    stale_runs: set[str]
    kept: list[str]  # records under another name (e.g. a superseded teacher): listed, not averaged in


def read(root: Path = RESULTS) -> Records:
    """Every result file of `root`, grouped by (row, mode) and task (the table's cells)."""
    files = sorted(root.glob("*.json"))
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    epochs: dict[tuple[str, str], set[str]] = {}
    kept: list[str] = []
    stale: dict[tuple[str, str], set[str]] = {}
    stale_runs: set[str] = set()
    for f in files:
        r = json.loads(f.read_text())
        augment = (r.get("stage1_augment") or {}).get("kind", "")
        target = r.get("stage1_target", "scores")
        dropout = (r.get("stage1") or {}).get("dropout", 0.0)
        if f.name != result_path(r["row"], r["mode"], r["task"], r.get("seed", 0), root, bool(r.get("quad_init")),
                                 augment, target, bool(r.get("score_init")), bool(dropout),
                                 (r.get("anneal") or {}).get("epochs", 0.0)).name:
            kept.append(f"- {f.name}: {r['row']} {r['task']} {100 * r['value']:.1f}"
                        + (f" ({r['note']})" if r.get("note") else ""))
            continue
        key = (r["row"], "" if r["row"] == "teacher" else r["mode"] + (", quad-init" if r.get("quad_init") else "")
               + (", score-init" if r.get("score_init") else "")
               + (f", {AUGMENTS[augment]}" if augment else "")
               + (f", {STAGE1_TARGET_LABELS[target]}" if target != "scores" else "")
               + (f", dropout {dropout:g}" if dropout else "")
               + (f", softmax annealed over {r['anneal']['epochs']:g} stage-1 epoch"
                  f"{'' if r['anneal']['epochs'] == 1 else 's'}" if r.get("anneal") else ""))
        cells.setdefault(key, {}).setdefault(r["task"], []).append(100 * r["value"])
        if "teacher_run" in r and r["teacher_run"] != teacher_run(root, r["task"], r.get("seed", 0)):
            stale.setdefault(key, set()).add(r["task"])
            stale_runs.add(r["teacher_run"])
        data = "" if r.get("subset") is None else f" ({r['subset']:,} ex.)"  # none: the full training set
        if "stage1" in r:
            stages = f"{r['stage1']['epochs']:g}+{r['stage2']['epochs']:g}"
            batch = r["stage1"].get("batch_size", BATCH_SIZE)
            stages += "" if batch == BATCH_SIZE else f" (batch {batch})"
            lr2 = r["stage2"].get("lr", STAGE2_LR)
            stages += "" if lr2 == STAGE2_LR else f" (stage 2 at {lr2:g})"
            copies = (r.get("stage1_augment") or {}).get("copies", REPLACE_COPIES)  # replace and neighbours runs
            stages += "" if copies == REPLACE_COPIES else f" ({copies} copies)"
            source = (r.get("stage1_augment") or {}).get("from")  # transfer runs only
            stages += f" (+ {source} pairs)" if source else ""
            epochs.setdefault(key, set()).add(f"{r['task']} {stages}{data}")
        elif "schedule" in r:
            epochs.setdefault(key, set()).add(f"{r['task']} {r['schedule']['epochs']:g}{data}")
    return Records(cells, epochs, stale, stale_runs, kept)


def order(cells: dict[tuple[str, str], dict]) -> list[tuple[str, str]]:
    """The table's (row, mode) order: the teacher, then each row's direct, distilled and other modes."""
    return [("teacher", "")] + [(r, m) for r in ROWS if r != "teacher" for m in ("direct", "distilled")
                                + tuple(sorted(m for (q, m) in cells if q == r and m not in ("direct", "distilled")))]


def paper_figures(row: str, mode: str) -> tuple[str, dict[str, float]] | None:
    """The papers' BERT-base figures the table sets beside (row, mode): (label, task -> value), or None."""
    base = mode.split(",")[0]
    if row == "teacher":
        return "MPCFormer teacher", PAPER_MPCFORMER["teacher"]
    if row == "2quad-freediv-quad" and mode.startswith("distilled"):
        return "freeDiv", PAPER_FREEDIV
    if f"{row} {base}" in PAPER_MPCFORMER:
        return "MPCFormer", PAPER_MPCFORMER[f"{row} {base}"]
    if row == "2relu-relu" and f"2relu-quad {base}" in PAPER_MPCFORMER:
        return "MPCFormer (2ReLU+Quad)", PAPER_MPCFORMER[f"2relu-quad {base}"]
    return None


def table(root: Path = RESULTS) -> str:
    """Markdown table from the result files (mean over seeds when several), beside the papers'."""
    rec = read(root)
    cells, epochs, stale, stale_runs, kept = rec.cells, rec.epochs, rec.stale, rec.stale_runs, rec.kept
    tasks = list(TASK_KEYS)
    lines = ["| row | training | " + " | ".join(f"{t} ({TASK_KEYS[t]})" for t in tasks)
             + " | epochs (stage 1 + 2; training subset if not all) | paper (BERT-base) |",
             "| --- | --- | " + " | ".join("---" for _ in tasks) + " | --- | --- |"]
    for row, mode in order(cells):
        got = cells.get((row, mode), {})
        if row in ABLATIONS and not got:
            continue
        vals = []
        for t in tasks:
            v = got.get(t)
            mark = "*" if t in stale.get((row, mode), ()) else ""
            if not v:
                vals.append("—")
            elif len(v) == 1:
                vals.append(f"{v[0]:.1f}{mark}")
            else:
                vals.append(f"{np.mean(v):.1f} ± {np.std(v):.1f} ({len(v)} seeds){mark}")
        figures = paper_figures(row, mode)
        paper = "" if figures is None else figures[0] + " " + "/".join(str(figures[1][t]) for t in tasks)
        ep = ", ".join(sorted(epochs.get((row, mode), ())))
        lines.append(f"| {row} | {mode or 'fine-tuned'} | " + " | ".join(vals) + f" | {ep} | {paper} |")
    if stale:
        lines += ["", "\\* from an earlier teacher (distilled from it, or f(n) fitted on it): "
                  + ", ".join(sorted(stale_runs)) + "; not yet rerun from the teacher row's current teacher."]
    if kept:
        lines += ["", "Other records (not in the table):", *kept]
    return "\n".join(lines)
