"""Fixed point over the ring Z_2^64 (ABY3 §5: ring Z_2^k, f fraction bits; SPU FM64 default f = 18).

A real x is carried as the ring element round(x 2^f) mod 2^64 (numpy uint64, whose
arithmetic wraps mod 2^64 by itself). Signed values use two's complement: the element v
means v - 2^64 when v >= 2^63. Protocols that compare or truncate assume the value stays
in [-2^62, 2^62) (MSB comparison and wrap-corrected truncation need one spare bit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refimpl.constants import C

RING_BITS = int(C["aby3"]["ring_bits"])  # k = 64
FRACTION_BITS = int(C["aby3"]["fraction_bits"])  # f = 18 (SPU FM64 default)
U64 = np.uint64
_MAX_ABS_RAW = 2.0 ** (RING_BITS - 2)  # |x 2^f| < 2^62: room for one MSB/truncation bit


@dataclass(frozen=True)
class Fxp:
    """Fixed-point format: k ring bits (only 64 supported), f fraction bits."""

    f: int = FRACTION_BITS  # SPU FM64 default; refimpl/constants.toml aby3.fraction_bits
    k: int = RING_BITS

    def __post_init__(self) -> None:
        if self.k != 64:
            raise ValueError(f"only the ring Z_2^64 is implemented, got k = {self.k}")
        if not 1 <= self.f <= 30:
            raise ValueError(f"fraction bits f = {self.f} must be in [1, 30] (products need 2f + 2 <= 62 bits)")

    @property
    def max_abs(self) -> float:
        """Largest |x| accepted at sharing time: |x| 2^f < 2^62."""
        return _MAX_ABS_RAW / 2.0**self.f

    def encode(self, x: np.ndarray | float, *, scale_bits: int | None = None) -> np.ndarray:
        """round(x 2^f) mod 2^64 as uint64; raises on NaN/inf or |x| 2^f >= 2^62."""
        s = self.f if scale_bits is None else scale_bits
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("cannot encode NaN or infinity as fixed point")
        raw = np.rint(x * 2.0**s)
        if raw.size and np.max(np.abs(raw)) >= _MAX_ABS_RAW:
            bad = float(np.max(np.abs(x)))
            raise ValueError(
                f"value {bad:g} outside the fixed-point range |x| < 2^{RING_BITS - 2 - s} "
                f"(k = {self.k}, {s} fraction bits)"
            )
        return raw.astype(np.int64).view(U64)

    def decode(self, v: np.ndarray, *, scale_bits: int | None = None) -> np.ndarray:
        """Two's-complement uint64 -> float64 x = signed(v) / 2^f."""
        s = self.f if scale_bits is None else scale_bits
        return np.asarray(v, dtype=U64).view(np.int64).astype(np.float64) / 2.0**s


def public_fixed(c, t: int) -> np.ndarray:
    """A public constant (or array) c at scale t: round(c 2^t) as ring elements, unchecked (small constants)."""
    return np.rint(np.asarray(c, dtype=np.float64) * 2.0**t).astype(np.int64).view(U64)
