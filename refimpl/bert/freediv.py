"""Fitting freeDiv's public attention denominator f(n) = a n^b (the command: `refimpl fit-freediv`).

freeDiv (Liu Weixin et al. 2024, "MPC-friendly function replacement", attention part):
run the model over a task's data, record for every sequence length n the mean over
sentences, layers, heads and real query rows of the row sum Z = sum_k q(s_k) m_k
(q = exp(s - max_k s) for Softmax, the sum that softmax divides by, which lies in [1, n]
and matches the paper's f(1) = a = 0.99; q = (s + c)^2 for 2Quad), then fit
log Z(n) = log a + b log n by least squares over the lengths seen. The division by Z
becomes a multiplication by the public 1 / f(n).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from refimpl.bert.config import BertConfig
from refimpl.bert.functional import FREEDIV, QUAD_C
from refimpl.bert.model import Params, forward
from refimpl.bert.tokenizer import pad

PAPER = {"softmax": FREEDIV["softmax-freediv"], "2quad": FREEDIV["2quad-freediv"]}  # (a, b), spec freediv.*
KINDS = ("softmax", "2quad")


def row_sums(scores: np.ndarray, mask: np.ndarray, kind: str, c: float = QUAD_C) -> np.ndarray:
    """Z per (sentence, head, query) = sum_k q(s_k) m_k, q = exp(s - max) or (s + c)^2 (freeDiv). scores [B, h, n, n], mask [B, n]."""
    m = mask[:, None, None, :].astype(np.float64)  # [B, 1, 1, n] keys
    s = scores.astype(np.float64)
    if kind == "softmax":
        row_max = np.where(m > 0, s, -np.inf).max(axis=-1, keepdims=True)  # over real keys
        q = np.exp(np.minimum(s - row_max, 0.0))  # softmax's own denominator terms, in (0, 1]
    elif kind == "2quad":
        q = (s + c) * (s + c)
    else:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    return (q * m).sum(axis=-1)  # [B, h, n]


def record_denominators(
    params: Params, config: BertConfig, ids: list[list[int]], types: list[list[int]], kind: str,
    *, pad_id: int = 0, batch_size: int = 64,
) -> dict[int, tuple[float, int]]:
    """{n: (mean Z over sentences of n real tokens, layers, heads, real queries; number of sentences)}.

    Sentences are batched by exact length, so no padding enters a row sum.
    """
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(ids):
        by_len.setdefault(len(r), []).append(i)
    out: dict[int, tuple[float, int]] = {}
    for n, rows in sorted(by_len.items()):
        total, count = 0.0, 0
        for k in range(0, len(rows), batch_size):
            index = rows[k: k + batch_size]
            b = pad([ids[i] for i in index], [types[i] for i in index], pad_id)
            res = forward(params, config, b.input_ids, b.token_type_ids, b.attention_mask)
            for s in res.attention_scores:  # every layer
                z = row_sums(s, b.attention_mask, kind, config.quad_c)
                total += float(z.sum())
                count += z.size
        out[n] = (total / count, len(rows))
    return out


def fit_power_law(n: np.ndarray, z: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """(a, b) minimising sum w (log z - log a - b log n)^2 (freeDiv's fit in log-log space)."""
    n, z = np.asarray(n, np.float64), np.asarray(z, np.float64)
    if n.shape != z.shape or n.size < 2:
        raise ValueError(f"need at least two (n, z) pairs of equal shape, got {n.shape} and {z.shape}")
    if np.any(n <= 0) or np.any(z <= 0):
        raise ValueError("a power law fit needs positive n and z")
    w = np.ones_like(n) if weights is None else np.asarray(weights, np.float64)
    x = np.stack([np.ones_like(n), np.log(n)], axis=1)  # [k, 2]
    sw = np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(x * sw, np.log(z) * sw[:, 0], rcond=None)
    return float(math.exp(coef[0])), float(coef[1])


def fit(records: dict[int, tuple[float, int]], min_count: int = 5) -> tuple[float, float]:
    """Fit over the lengths seen at least min_count times (each length weighs the same)."""
    keep = [(n, z) for n, (z, c) in records.items() if c >= min_count]
    if len(keep) < 2:
        raise ValueError(f"fewer than two lengths with >= {min_count} sentences; lower --min-count")
    n, z = zip(*keep)
    return fit_power_law(np.array(n), np.array(z))


def plot(path: Path, fits: dict[str, dict]) -> bool:
    """Save the measured means and both fits (ours, the paper's) per kind; False without matplotlib."""
    try:  # lazy: matplotlib is an optional dependency (refimpl[plot])
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return False
    fig = figure(plt, fits)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def figure(plt, fits: dict[str, dict]):
    """The measured means and both fits per kind (log-log), one panel per model: a matplotlib Figure."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter  # lazy: an optional dependency (refimpl[plot])

    fig, axes = plt.subplots(1, len(fits), figsize=(5 * len(fits), 4), squeeze=False)
    for ax, (label, f) in zip(axes[0], fits.items()):
        n = np.array([int(k) for k in f["records"]])
        z = np.array([v[0] for v in f["records"].values()])
        grid = np.linspace(n.min(), n.max(), 200)
        ax.loglog(n, z, ".", label="measured mean")
        ax.loglog(grid, f["a"] * grid ** f["b"], "-", label=f"fit {f['a']:.4g} n^{f['b']:.4f}")
        pa, pb = f["paper"]
        ax.loglog(grid, pa * grid ** pb, "--", label=f"paper {pa:.4g} n^{pb:.4f}")
        ax.set_title(label)
        ax.set_xlabel("sequence length n (tokens)")
        ax.set_ylabel("mean attention denominator (row sum)")
        ax.set_xticks([t for t in (4, 8, 16, 32, 64, 128, 256, 512) if n.min() / 2 < t < n.max() * 2])
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.legend()
    return fig
