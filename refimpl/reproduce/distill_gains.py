"""`refimpl reproduce distill-gains`: freeDiv's accuracy deltas, distillation gains and times, from the result files.

Three tables of the freeDiv paper (§5), each beside refimpl's figures read from the committed
results/accuracy/*.json (written by `refimpl reproduce accuracy`; no training here):

1. Accuracy of 2Quad-freeDiv + Quad (distilled) as the paper reports it: a difference to its
   own Softmax + GeLU baseline, SST-2 91.6 (+0.1), STS-B 89.0 (+0.3), RTE 61.4 (-1.8), so a
   baseline of 91.5 / 88.7 / 63.2. refimpl's baseline is its teacher (the Softmax + GeLU model
   the students are distilled from); its 2Quad-freeDiv + Quad figure is the best seed-0 record
   of that row (the paper's "at most"), and the default recipe's beside it.
2. Distillation gains: distilled minus undistilled ("direct") per converted model and task;
   the paper's largest gains are +42.4 (SST-2), +90.2 (STS-B), +12.6 (RTE) points.
3. Distillation time per task: the paper's table is an image missing from the project's
   paper sources, so only refimpl's side is printed: train_seconds where the record has it
   (the training alone), else seconds (the command's wall time, evaluation included).
"""

from __future__ import annotations

import json
from pathlib import Path

from refimpl.constants import C

from .paper import PaperTable, Row, add_json, emit, repo_path

PAPER = C["freediv"]["paper"]
FD = C["freediv"]
TASKS = ("SST-2", "STS-B", "RTE")
PAPER_VALUE = {"SST-2": float(FD["sst2_accuracy"]), "STS-B": float(FD["stsb_pearson"]), "RTE": float(FD["rte_accuracy"])}
PAPER_DELTA = {"SST-2": float(PAPER["sst2_delta"]), "STS-B": float(PAPER["stsb_delta"]), "RTE": float(PAPER["rte_delta"])}
PAPER_GAIN = {"SST-2": float(PAPER["distill_gain_sst2"]), "STS-B": float(PAPER["distill_gain_stsb"]),
              "RTE": float(PAPER["distill_gain_rte"])}
ROWS = ("2quad-freediv-quad", "2quad-quad", "2relu-relu", "scaling-quad", "softmax-freediv-quad")
TARGET = "2quad-freediv-quad"


def records(root: Path) -> dict[str, dict]:
    """Every seed-0 record of results/accuracy, by file stem."""
    out = {}
    for p in sorted(root.glob("*.json")):
        stem = p.stem
        if stem.rsplit("_", 1)[-1].startswith("s") and stem.rsplit("_", 1)[-1][1:].isdigit():
            continue  # another seed
        out[stem] = json.loads(p.read_text())
    return out


def points(rec: dict) -> float:
    """The record's metric in points (accuracy or Pearson x 100)."""
    return 100.0 * float(rec["value"])


def seconds(rec: dict) -> tuple[float, str]:
    """(seconds, which): train_seconds when recorded, else the command's wall seconds."""
    if "train_seconds" in rec:
        return float(rec["train_seconds"]), "train"
    return float(rec["seconds"]), "wall"


def best_distilled(recs: dict, row: str, task: str) -> tuple[str, dict] | None:
    """The best seed-0 distilled record of `row` on `task` over every recipe (stem, record)."""
    cands = [(k, r) for k, r in recs.items() if k.startswith(f"{row}-distilled") and k.endswith(f"_{task}")]
    return max(cands, key=lambda kr: kr[1]["value"]) if cands else None


def build(root: Path | None = None) -> PaperTable:
    """Read the records and assemble the three tables."""
    root = repo_path("results/accuracy") if root is None else root
    recs = records(root)
    t = PaperTable("distill-gains", "freeDiv accuracy deltas, distillation gains and distillation times",
                   "freeDiv (Liu et al. 2024) §5, accuracy, distillation and time tables; refimpl/constants.toml "
                   "[freediv], [freediv.paper]")
    extra: dict = {"accuracy": {}, "gains": {}, "times": {}}
    for task in TASKS:
        teacher = recs.get(f"teacher_{task}")
        best = best_distilled(recs, TARGET, task)
        default = recs.get(f"{TARGET}-distilled_{task}")
        base = PAPER_VALUE[task] - PAPER_DELTA[task]
        if teacher is None or best is None:
            continue
        tv = points(teacher)
        t.rows.append(Row(f"{task}: Softmax + GeLU baseline", round(base, 1), tv, compare="diff",
                          note="paper: 2Quad-freeDiv + Quad minus its stated delta; refimpl: the teacher"))
        t.rows.append(Row(f"{task}: 2Quad-freeDiv + Quad (distilled), best recipe", PAPER_VALUE[task], points(best[1]),
                          compare="diff", note=f"{best[0]}"))
        t.rows.append(Row(f"{task}: its delta to the baseline", PAPER_DELTA[task], points(best[1]) - tv, compare="diff",
                          note=f"default recipe: {points(default) - tv:+.1f}" if default else ""))
        extra["accuracy"][task] = {"paper_baseline": base, "paper_value": PAPER_VALUE[task], "paper_delta": PAPER_DELTA[task],
                                   "teacher": tv, "best": {"record": best[0], "value": points(best[1])},
                                   "default": points(default) if default else None}
    for task in TASKS:
        gains, best_gains = {}, {}
        for row in ROWS:
            d, s = recs.get(f"{row}-direct_{task}"), recs.get(f"{row}-distilled_{task}")
            b = best_distilled(recs, row, task)
            if d and s:
                gains[row] = points(s) - points(d)
            if d and b:
                best_gains[row] = (points(b[1]) - points(d), b[0])
        if gains:
            top = max(gains, key=gains.get)
            t.rows.append(Row(f"{task}: largest distillation gain, default recipe (points)", PAPER_GAIN[task], gains[top],
                              compare="diff", note=f"{top}; others: " + ", ".join(f"{k} {v:+.1f}" for k, v in gains.items()
                                                                                  if k != top)))
        if best_gains:
            top = max(best_gains, key=lambda k: best_gains[k][0])
            t.rows.append(Row(f"{task}: largest distillation gain, best recorded recipe (points)", PAPER_GAIN[task],
                              best_gains[top][0], compare="diff", note=f"{best_gains[top][1]} minus {top}-direct"))
        extra["gains"][task] = {"default": gains, "best": {k: v[0] for k, v in best_gains.items()}}
    for task in TASKS:
        rec = recs.get(f"{TARGET}-distilled_{task}")
        if rec:
            sec, which = seconds(rec)
            ep = f"{rec['stage1']['epochs']:g} + {rec['stage2']['epochs']:g} epochs"
            t.rows.append(Row(f"{task}: distillation time of 2Quad-freeDiv + Quad (default recipe)", "image, not in our sources",
                              sec / 60, compare="none", unit="min",
                              note=f"{which} seconds; {rec['train_examples']:,} training examples, {ep}"))
            extra["times"][task] = {"seconds": sec, "kind": which, "train_examples": rec["train_examples"],
                                    "stage1_epochs": rec["stage1"]["epochs"], "stage2_epochs": rec["stage2"]["epochs"]}
    t.extra = extra
    t.sections.append(
        "Reading: the paper's deltas are against its own Softmax + GeLU BERT-base (about 91.5 / 88.7 / 63.2), not "
        "MPCFormer's teacher (93.1 / 89.1 / 69.7): its RTE gap is 1.8 points. refimpl's deltas are against its own "
        "MiniLM teacher. A gain of +90.2 Pearson points needs an undistilled STS-B model near 0 correlation, and +42.4 on "
        "SST-2 one near chance; refimpl's undistilled rows are fine-tuned from MiniLM's pretrained weights "
        "(MPCFormer's w/o{d}), which already reach 63-80 on SST-2, so its SST-2 gains are smaller; on STS-B its "
        "undistilled rows are also near 0 and the gains are large where the distillation recipe works.")
    t.differences += [
        "Model: all-MiniLM-L6-v2 (6 layers, hidden 384) with the vocabulary pruned to the task, not BERT-base-cased.",
        "Data: SST-2 on a fixed 8,000-example training subset for the default recipe, full STS-B and RTE; few epochs "
        "(each record states its own); sequence length 64 for distillation (max_length in the records), the paper's 128.",
        "Distillation hyperparameters are MPCFormer's (the freeDiv paper does not publish its own).",
        "Seed-0 records only (the accuracy table prints means over seeds where several exist); the best recipe is "
        "chosen on the dev set, as the paper's \"at most\" figures are.",
        "Times are this machine's CPU (numpy, 2 cores shared), the paper's a P100 GPU.",
    ]
    return t


def add_arguments(ap) -> None:
    """The options of `refimpl reproduce distill-gains`."""
    ap.add_argument("--results", default=None, help="the accuracy records (default: the repository's results/accuracy)")
    add_json(ap)


def run(args) -> int:
    """`refimpl reproduce distill-gains [--results DIR] [--json FILE]`."""
    return emit(build(Path(args.results) if args.results else None), args)


__all__ = ["build", "records", "best_distilled", "points", "seconds", "add_arguments", "run"]
