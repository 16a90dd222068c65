"""`refimpl plot`: figures of the stored results, as PNG files into docs/img/ (needs the `plot` extra).

- ckks_peer_ratios.png: refimpl's time over each peer library's per CKKS operation and ring size
  (results/ckks/bench_ckks.json, `refimpl bench ckks`); below 1 refimpl is faster;
- ckks_precision_levels.png: CKKS precision (bits) along the chain, level by level and bootstrap
  after bootstrap (results/ckks/precision_levels_2^13.json, `refimpl experiment precision-levels`),
  beside the 128-bit N = 2^16 bootstrap's (results/ckks/bootstrap_128-2^16-dense19_quiet.json);
- nexus_placement_small.png, nexus_placement_bertbase.png: the bootstrap placement of the
  encrypted BERT (refimpl/reproduce/plots_placement.py);
- accuracy_vs_papers.png: the accuracy table's cells (refimpl/reproduce/accuracy_table.py) beside
  the papers' figures (refimpl/constants.toml), per task and variant;
- aby3_layer_cost.png: bytes and rounds of one BERT-base layer (n = 128) per attention/activation
  variant under ABY3 (results/aby3/aby3_speed.json, `refimpl reproduce speed`);
- freediv_fit.png: freeDiv's f(n) = a n^b beside the measured attention denominators
  (results/bert/freediv_fit.json, `refimpl fit-freediv`; drawn by refimpl.bert.freediv.figure).

Every figure reads committed result files only (never runs a computation) and names them in a
caption line; a missing file is an error of one line that names the command making it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from refimpl.bert import freediv
from refimpl.reproduce import accuracy_table, plots_placement
from refimpl.reproduce.results_index import COMMANDS, FOLDERS

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
OUT = REPO / "docs" / "img"


def pyplot():
    """matplotlib.pyplot, or SystemExit with one line saying how to install it."""
    try:
        import matplotlib  # lazy: an optional dependency (the `plot` extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("refimpl plot: error: matplotlib is not installed: pip install 'refimpl[plot]'") from None
    return plt


def finish(plt, fig, out: Path, caption: str, bottom: float = 0.04) -> Path:
    """The caption line (the files read) at the bottom, then the PNG."""
    fig.text(0.01, 0.005, caption, fontsize=7, color="dimgrey")
    if fig.get_layout_engine() is None:  # a figure may have set its own (room for a legend under the title)
        fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def ckks_peer_ratios(plt, sources: list[Path]):
    src = sources[0]
    recs = [r for r in json.loads(src.read_text())["records"] if r.get("threads") == "1" and r.get("peers")]
    if not recs:
        raise SystemExit(f"refimpl plot: error: no one-thread peer rows in {src}: run `refimpl bench ckks`")
    ops = sorted({r["name"].removeprefix("ckks.") for r in recs if any(p.get("ratio") for p in r["peers"].values())})
    sizes = sorted({r["N"] for r in recs})
    peers = sorted({p for r in recs for p in r["peers"]})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 4.8), sharey=True, squeeze=False)
    for ax, N in zip(axes[0], sizes):
        width = 0.8 / len(peers)
        for j, peer in enumerate(peers):
            vals = []
            for op in ops:
                r = next((r for r in recs if r["N"] == N and r["name"] == f"ckks.{op}"), None)
                vals.append((r or {}).get("peers", {}).get(peer, {}).get("ratio", float("nan")))
            ax.bar([i + j * width for i in range(len(ops))], vals, width, label=peer)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(ops))], ops, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"N = 2^{N.bit_length() - 1}, one thread")
    axes[0][0].set_ylabel("refimpl time / peer time\n(log scale; < 1: refimpl faster)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.93),
               ncol=len(peers), frameon=False)
    fig.suptitle("CKKS operations: refimpl against peer libraries (refimpl bench ckks)")
    fig.set_layout_engine("tight", rect=(0, 0.04, 1, 0.9))
    return fig


def aby3_layer_cost(plt, sources: list[Path]):
    rows = json.loads(sources[0].read_text())["sizes"]["bert-base"]["rows"]
    names = [f"{r['attention']} + {r['activation']}" for r in rows]
    mib = [r["layer"]["bytes"] / 2**20 for r in rows]
    rounds = [r["layer"]["rounds"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    a.barh(names, mib, color="tab:blue")
    a.set_xlabel("MiB per layer (all parties)")
    a.invert_yaxis()
    b.barh(names, rounds, color="tab:orange")
    b.set_xlabel("rounds per layer")
    a.tick_params(axis="y", labelsize=8)
    fig.suptitle("ABY3, one BERT-base layer at n = 128 (refimpl reproduce speed)")
    return fig


def ckks_precision_levels(plt, sources: list[Path]):
    """Precision along the chain (left) and against the level, one line per bootstrap cycle (right)."""
    d, ref = (json.loads(s.read_text()) for s in sources)
    rows, top = d["rows"], d["output_level"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.5, 1]})
    steps = [r["step"] + 0.5 * r["bootstraps"] for r in rows]  # a bootstrap drawn half a step after its product
    for stat, style in (("mean", "-"), ("median", "--"), ("min", ":")):
        a.plot(steps, [r["precision_bits"][stat] for r in rows], style, color="tab:blue",
               label=f"{stat} over slots" + (" (worst slot)" if stat == "min" else ""))
    for r, x in zip(rows, steps):
        if r["event"] == "bootstrap":
            a.axvline(x, color="tab:red", lw=0.8)
            a.text(x, 0.98, f" bootstrap {r['bootstraps']}\n (level 0 -> {top})", color="tab:red", fontsize=7,
                   va="top", transform=a.get_xaxis_transform())
    bp = ref["precision_bits"]
    for stat, style in (("mean", "-"), ("min", ":")):
        a.axhline(bp[stat], color="tab:green", ls=style, lw=1,
                  label=f"one 128-bit bootstrap at N = 2^16, {stat}: {bp[stat]:.1f} bits")
    a.set_xlabel(f"ciphertext products since encryption (one level each; level {top} -> 0, then bootstrap)")
    a.set_ylabel("precision (bits, -log2 |error|)")
    a.set_ylim(min(bp["min"], min(r["precision_bits"]["min"] for r in rows)) - 1.5,
               max(r["precision_bits"]["mean"] for r in rows) + 1.5)
    a.legend(fontsize=7, loc="lower right", ncol=2, framealpha=0.9)
    a.set_title(f"Along the chain: x * (+-1) per level, {d['cycles']} bootstraps", fontsize=10)
    for k in range(d["cycles"] + 1):
        cyc = [r for r in rows if r["bootstraps"] == k]
        b.plot([r["level"] for r in cyc], [r["precision_bits"]["mean"] for r in cyc], marker=".",
               label="before any bootstrap" if k == 0 else f"after bootstrap {k}")
    b.plot([f["level"] for f in d["fresh"]], [f["precision_bits"]["mean"] for f in d["fresh"]], "k--",
           label="fresh encryption at that level")
    b.invert_xaxis()
    b.xaxis.get_major_locator().set_params(integer=True)
    b.set_xlabel("ciphertext level")
    b.set_ylabel("mean precision over slots (bits)")
    b.legend(fontsize=7)
    b.set_title("Against the level (mean over the slots)", fontsize=10)
    fig.suptitle(f"CKKS precision per level, N = 2^{d['N'].bit_length() - 1} ({'INSECURE, precision only' if d['insecure'] else '128-bit'}), "
                 f"chain shaped as {d['chain']['shape'].split()[0]}, scale 2^{d['chain']['scale_bits']:g}")
    return fig


def accuracy_points(root: Path) -> list[dict]:
    """Per variant (the table's rows, not the ablations): refimpl's cells and the papers' figures, per task."""
    rec = accuracy_table.read(root)
    out = []
    for row in (r for r in accuracy_table.ROWS if r not in accuracy_table.ABLATIONS):
        point = {"row": row, "paper_row": ""}
        for mode in ("direct", "distilled") if row != "teacher" else ("",):
            point[mode or "distilled"] = {t: v for t, v in rec.cells.get((row, mode), {}).items()}
            fig = accuracy_table.paper_figures(row, mode or "fine-tuned")
            point["paper " + (mode or "distilled")] = fig[1] if fig else {}
            if fig and fig[0].startswith("MPCFormer ("):
                point["paper_row"] = fig[0].removeprefix("MPCFormer ").strip("()")
        best = {}  # the best distilled recipe of the table's other modes (ours, e.g. quad-init), per task
        for (r, mode), cell in rec.cells.items():
            if r == row and mode.startswith("distilled,"):
                for t, v in cell.items():
                    if t not in best or np.mean(v) > np.mean(best[t]):
                        best[t] = v
        point["best"] = best
        out.append(point)
    return out


def accuracy_vs_papers(plt, sources: list[Path]):
    points = accuracy_points(sources[0])
    series = [("direct", "o", "none", "tab:grey", "refimpl, no distillation"),
              ("distilled", "o", None, "tab:blue", "refimpl, distilled (MPCFormer's recipe; teacher: fine-tuned)"),
              ("best", "*", None, "tab:green", "refimpl, best distilled recipe of the table (ours: quad-init, ...)"),
              ("paper direct", "D", "none", "k", "paper, no distillation"),
              ("paper distilled", "D", None, "k", "paper, distilled (teacher: fine-tuned)")]
    tasks = list(accuracy_table.TASK_KEYS)
    fig, axes = plt.subplots(1, len(tasks), figsize=(15, 5.4), sharey=True)
    names = [p["row"] + (f"\n(paper: {p['paper_row']})" if p["paper_row"] else "") for p in points]
    for ax, task in zip(axes, tasks):
        for j, (key, marker, face, color, label) in enumerate(series):
            ys, xs, errs = [], [], []
            for i, p in enumerate(points):
                v = p.get(key, {}).get(task)
                if v is None or (isinstance(v, list) and not v):
                    continue
                v = np.atleast_1d(v)
                ys.append(i + (j - 2) * 0.12)
                xs.append(float(np.mean(v)))
                errs.append(float(np.std(v)) if len(v) > 1 else 0.0)
            ax.errorbar(xs, ys, xerr=errs, fmt=marker, color=color, mfc=face or color, ms=7 if marker == "*" else 5,
                        capsize=2, lw=0.8, label=label)
        ax.set_yticks(range(len(points)), names, fontsize=8)
        ax.invert_yaxis()
        low = min(x for line in ax.lines for x in line.get_xdata())
        ax.set_xlim(max(0, 10 * int((low - 5) // 10)), 100)
        ax.grid(axis="x", lw=0.3)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel(f"{accuracy_table.TASK_KEYS[task]} (%)" if task != "STS-B" else "Pearson correlation (x 100)")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.95),
               ncol=3, frameon=False)
    fig.set_layout_engine("tight", rect=(0, 0.04, 1, 0.89))
    fig.suptitle("Accuracy against the papers: refimpl (MiniLM, 6 x 384; mean over seeds, bars: std) beside "
                 "MPCFormer's and freeDiv's BERT-base figures")
    return fig


def freediv_fit(plt, sources: list[Path]):
    fig = freediv.figure(plt, json.loads(sources[0].read_text())["fits"])
    fig.suptitle("freeDiv: f(n) = a n^b fitted to the mean attention denominator per sentence length (SST-2 dev)")
    return fig


# name -> (function, the result files it reads, relative to results/; a folder ends in "/")
PLOTS = {
    "ckks_peer_ratios.png": (ckks_peer_ratios, ["ckks/bench_ckks.json"]),
    "ckks_precision_levels.png": (ckks_precision_levels, ["ckks/precision_levels_2^13.json",
                                                          "ckks/bootstrap_128-2^16-dense19_quiet.json"]),
    "nexus_placement_small.png": (plots_placement.small_models,
                                  [f"nexus/nexus_bert_plan_{m}.json" for m in plots_placement.SMALL_MODELS]),
    "nexus_placement_bertbase.png": (plots_placement.bertbase, ["nexus/nexus_bertbase_128.json",
                                                                "nexus/nexus_bertbase_128_placement_fewest.json",
                                                                "nexus/nexus_bertbase_128_placement_time.json"]),
    "accuracy_vs_papers.png": (accuracy_vs_papers, ["accuracy/"]),
    "aby3_layer_cost.png": (aby3_layer_cost, ["aby3/aby3_speed.json"]),
    "freediv_fit.png": (freediv_fit, ["bert/freediv_fit.json"]),
}
EXTRA_SOURCES = {"accuracy_vs_papers.png": "paper figures: refimpl/constants.toml [freediv], [distill.mpcformer_accuracy]"}


def needed(name: str, results: Path) -> list[Path]:
    """The files plot `name` reads, or SystemExit with one line naming the first absent one and its command."""
    paths = []
    for rel in PLOTS[name][1]:
        path = results / rel
        if not (path.is_dir() and any(path.glob("*.json")) if rel.endswith("/") else path.is_file()):
            cmd = COMMANDS.get(rel) or FOLDERS.get(rel, ("", "(see results/INDEX.md)"))[1].strip("`")
            raise SystemExit(f"refimpl plot: error: {name} needs {path}, which is absent or empty; "
                             f"it is made by: {cmd}")
        paths.append(path)
    return paths


def make_all(results: Path = RESULTS, out_dir: Path = OUT, names: list[str] | None = None) -> list[Path]:
    """The plots `names` (default: all), each from its result files; a missing file is an error."""
    unknown = sorted(set(names or ()) - set(PLOTS))
    if unknown:
        raise SystemExit(f"refimpl plot: error: unknown plot {', '.join(unknown)}; known: {', '.join(PLOTS)}")
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name in names or PLOTS:
        fn, rels = PLOTS[name]
        sources = needed(name, results)
        caption = ("Source: " + ", ".join(f"results/{r}" + ("*.json" if r.endswith("/") else "") for r in rels)
                   + (f"; {EXTRA_SOURCES[name]}" if name in EXTRA_SOURCES else "") + ". Regenerate: refimpl plot")
        made.append(finish(plt, fn(plt, sources), out_dir / name, caption))
    return made
