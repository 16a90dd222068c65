"""Precision in bits, per slot (ours: a measure): -log2 |got - want|; reported as min / mean / median over slots."""

from __future__ import annotations

import numpy as np


def precision_bits(got, want) -> dict[str, float]:
    """min (worst slot), mean and median of -log2 |got - want| over all slots."""
    err = np.abs(np.asarray(got) - np.asarray(want)).ravel()
    b = -np.log2(np.maximum(err, 2.0**-60))
    return {"min": float(b.min()), "mean": float(b.mean()), "median": float(np.median(b)), "max_abs_err": float(err.max())}
