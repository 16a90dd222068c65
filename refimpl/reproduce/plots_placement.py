"""The bootstrap placement figures of `refimpl plot` (ours): ciphertext levels through the encrypted BERT.

- nexus_placement_small.png: the plan of each shipped small model (2 layers + head), piece by
  piece: the levels each piece takes the ciphertexts through, with the refresh points marked
  (results/nexus/nexus_bert_plan_<model>.json, `refimpl experiment nexus-bert --plan-only ...`);
- nexus_placement_bertbase.png: layer 1 of BERT-base at n = 128, block by block: the student
  under the fewest-refreshes placement (NEXUS's cost) and the time-weighted one (ours), and
  Softmax + GELU (results/nexus/nexus_bertbase_128{,_placement_fewest,_placement_time}.json).

Both read stored plans only; nothing is planned or run here. The small models' plans are stored
as the fixed-width table of refimpl.ckks.bootstrap.placement.plan_table, read back by plan_rows.
"""

from __future__ import annotations

import json
from pathlib import Path

PLAN_PRESET, PLAN_N = "128-2^16-dense19", 8  # the stored plan drawn: the preset of the measured runs, 8 tokens
SMALL_MODELS = {"2quad-freediv-quad": "2Quad-freeDiv + Quad (the student)", "softmax-gelu": "Softmax + GELU"}
PIECE, REFRESHED, REFRESH = "tab:blue", "tab:orange", "tab:red"


def plan_rows(lines: list[str]) -> list[dict]:
    """The rows of a stored plan table (plan_table's columns: block, boot, cts, level in, cost, level out)."""
    rows = []
    for line in lines[1:]:
        if line.startswith("bootstrap points"):
            break
        words = line.split()
        boot = words[1] == "yes"
        cts, level_in, cost, level_out = map(int, words[2:] if boot else words[1:])
        rows.append({"block": words[0], "bootstrap": boot, "ciphertexts": cts, "level_in": level_in, "cost": cost,
                     "level_out": level_out})
    return rows


def stored_plan(src: Path) -> dict:
    """The plan of `src` at PLAN_PRESET for PLAN_N tokens, its table read into rows."""
    for p in json.loads(src.read_text())["plans"]:
        if p["preset"] == PLAN_PRESET and p["n"] == PLAN_N:
            return {**p, "rows": plan_rows(p["table"])}
    raise SystemExit(f"refimpl plot: error: {src} holds no plan at {PLAN_PRESET} for n = {PLAN_N}")


def draw_levels(ax, names, level_in, level_out, refreshed, notes, top, inside=None) -> None:
    """Floating bars from level out to level in; a refresh marked by a red triangle at the top level;
    hatched where `inside` (the block refreshes between its pieces: the bar shows entry and exit only)."""
    x = range(len(names))
    bars = ax.bar(x, [i - o for i, o in zip(level_in, level_out)], bottom=level_out, width=0.7,
                  color=[REFRESHED if r else PIECE for r in refreshed], edgecolor="k", linewidth=0.4)
    for bar, hatched in zip(bars, inside or ()):
        if hatched:
            bar.set_hatch("///")
    for i, (r, note) in enumerate(zip(refreshed, notes)):
        if r:
            ax.plot(i, top + 0.9, marker="v", color=REFRESH, markersize=7)
        if note:
            ax.text(i, top + 1.6, note, ha="center", va="bottom", fontsize=7, color=REFRESH)
    ax.axhline(top, color="k", lw=0.6, ls="--")
    ax.set_ylim(0, top + (5 if any("\n" in n for n in notes) else 4))
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_xticks(list(x), names, rotation=90, fontsize=7)
    ax.set_ylabel("ciphertext level (rescalings left)")
    ax.grid(axis="y", lw=0.3)


def legend(fig, top: int, what: str, notes: str, hatched: bool = False) -> None:
    """One legend for the figure, in a row under its title."""
    from matplotlib.lines import Line2D  # lazy: an optional dependency (the `plot` extra)
    from matplotlib.patches import Patch

    handles = [Patch(color=PIECE, label=f"levels a {what} takes its ciphertexts through (in -> out)"),
               Patch(color=REFRESHED, label=f"the same, with a refresh (bootstrap to level {top})"),
               Line2D([], [], marker="v", color=REFRESH, ls="", label=f"refresh ({notes})"),
               Line2D([], [], color="k", ls="--", lw=0.6, label=f"bootstrap output level {top}")]
    if hatched:
        handles.insert(2, Patch(facecolor=REFRESHED, hatch="///", edgecolor="k",
                                label="refreshes inside: the bar shows entry and exit level only"))
    fig.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.965),
               ncol=len(handles) if not hatched else 3, frameon=False)


def small_models(plt, sources: list[Path]):
    """nexus_placement_small.png: each small model's plan, piece by piece (see the module docstring)."""
    plans = [stored_plan(s) for s in sources]
    fig, axes = plt.subplots(len(plans), 1, figsize=(14, 4.6 * len(plans)))
    for ax, (key, label), plan in zip(axes, SMALL_MODELS.items(), plans):
        rows, top = plan["rows"], plan["bootstrap_level"]
        draw_levels(ax, [r["block"] for r in rows], [r["level_in"] for r in rows], [r["level_out"] for r in rows],
                    [r["bootstrap"] for r in rows],
                    [f"x{r['ciphertexts']}" if r["bootstrap"] and r["ciphertexts"] > 1 else "" for r in rows], top)
        for i, r in enumerate(rows[1:], 1):
            if r["block"][:2] != rows[i - 1]["block"][:2]:  # L0 -> L1 -> head
                ax.axvline(i - 0.5, color="grey", lw=0.8)
        ax.set_title(f"{label}: {plan['bootstrap_points']} refresh points, {plan['ciphertexts_bootstrapped']} "
                     f"ciphertexts bootstrapped, {plan['levels_used']} levels used", fontsize=10)
    legend(fig, top, "piece", "xk: k ciphertexts refreshed")
    fig.set_layout_engine("tight", rect=(0, 0.02, 1, 0.95))
    fig.suptitle(f"Bootstrap placement, shipped small models (2 layers + head), {PLAN_PRESET}, n = {PLAN_N} tokens")
    return fig


def bertbase(plt, sources: list[Path]):
    """nexus_placement_bertbase.png: BERT-base layer 1 at n = 128, block by block, three placements."""
    both, fewest, timed = (json.loads(s.read_text()) for s in sources)
    panels = [("2Quad-freeDiv + Quad, fewest refreshes (NEXUS's cost)", fewest["models"]["2quad-freediv-quad"]),
              ("2Quad-freeDiv + Quad, time-weighted placement (ours)", timed["models"]["2quad-freediv-quad"]),
              ("Softmax + GELU, fewest refreshes (NEXUS's cost)", both["models"]["softmax-gelu"])]
    top = both["levels_after_bootstrap"]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 5.2), sharey=True)
    for ax, (label, m) in zip(axes, panels):
        blocks = m["layer_blocks"]
        draw_levels(ax, [b["kind"] for b in blocks], [b["level_in"] for b in blocks], [b["level_out"] for b in blocks],
                    [b["bootstrap_points"] > 0 for b in blocks],
                    [f"{b['bootstrap_points']}/{b['ciphertexts_refreshed']}\n{b['levels']} lv" if b["bootstrap_points"]
                     else "" for b in blocks], top, [b["levels"] > b["level_in"] - b["level_out"] for b in blocks])
        refreshed = sum(b["ciphertexts_refreshed"] for b in blocks)
        ax.set_title(f"{label}\nlayer {m['layer_shown']}: {refreshed} ciphertexts refreshed; model: "
                     f"{m['total']['ciphertexts_refreshed']} at {m['total']['bootstrap_points']} points", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    legend(fig, top, "block", "p/c: p refresh points and c ciphertexts in or before the block; k lv: levels it uses",
           hatched=True)
    fig.set_layout_engine("tight", rect=(0, 0.03, 1, 0.9))
    for ax in axes[1:]:
        ax.set_ylabel("")
    fig.suptitle(f"Bootstrap placement, BERT-base layer 1 at n = {both['n']}, {both['preset']} (128-bit), "
                 "block by block")
    return fig
