"""`refimpl plot`: figures of the stored results, as PNG files into docs/img/ (needs the `plot` extra).

- ckks_peer_ratios.png: refimpl's time over each peer library's per CKKS operation and ring size
  (results/ckks/bench_ckks.json, `refimpl bench ckks`); below 1 refimpl is faster;
- aby3_layer_cost.png: bytes and rounds of one BERT-base layer (n = 128) per attention/activation
  variant under ABY3 (results/aby3/aby3_speed.json, `refimpl reproduce speed`).
"""

from __future__ import annotations

import json
from pathlib import Path

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


def ckks_peer_ratios(plt, src: Path, out: Path) -> Path:
    recs = [r for r in json.loads(src.read_text())["records"] if r.get("threads") == "1" and r.get("peers")]
    if not recs:
        raise SystemExit(f"refimpl plot: error: no one-thread peer rows in {src}: run `refimpl bench ckks`")
    ops = sorted({r["name"].removeprefix("ckks.") for r in recs if any(p.get("ratio") for p in r["peers"].values())})
    sizes = sorted({r["N"] for r in recs})
    peers = sorted({p for r in recs for p in r["peers"]})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 4), sharey=True, squeeze=False)
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
    axes[0][0].set_ylabel("refimpl time / peer time (log; < 1: refimpl faster)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("CKKS operations: refimpl against peer libraries (refimpl bench ckks)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def aby3_layer_cost(plt, src: Path, out: Path) -> Path:
    rows = json.loads(src.read_text())["sizes"]["bert-base"]["rows"]
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
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


PLOTS = {
    "ckks_peer_ratios.png": (ckks_peer_ratios, "ckks/bench_ckks.json"),
    "aby3_layer_cost.png": (aby3_layer_cost, "aby3/aby3_speed.json"),
}


def make_all(results: Path = RESULTS, out_dir: Path = OUT) -> list[Path]:
    """Every plot whose result file exists; a missing file is skipped with a note on stderr."""
    import sys

    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, (fn, src) in PLOTS.items():
        if not (results / src).exists():
            print(f"refimpl plot: skipped {name}: no {results / src}", file=sys.stderr)
            continue
        made.append(fn(plt, results / src, out_dir / name))
    if not made:
        raise SystemExit(f"refimpl plot: error: no result files under {results}")
    return made
