"""Plaintexts and ciphertexts: residues in the NTT domain, with their level and exact scale.

A ciphertext at level l holds components c_0, c_1 (and c_2 before relinearization), each a
uint64 array [l+1, N] over q_0 .. q_l, and decrypts as [c_0 + c_1 s (+ c_2 s^2)]_{Q_l} = Delta m + e.
Objects are immutable: every operation returns a new one. A ciphertext also carries the id of
the secret key it is encrypted under (ours: refimpl.ckks.keys, "Key ids"; None: unknown).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import Parameters


@dataclass(frozen=True, eq=False)
class Plaintext:
    """An encoded message: poly [level+1, N] (NTT domain) at `scale`."""

    poly: np.ndarray
    level: int
    scale: float
    params: Parameters

    def __repr__(self) -> str:
        return f"Plaintext(level={self.level}, scale=2^{np.log2(self.scale):.2f}, N={self.params.N})"


@dataclass(frozen=True, eq=False)
class Ciphertext:
    """An RLWE ciphertext: components c[0], c[1] (, c[2]), each [level+1, N] in the NTT domain;
    key_id: the id of the secret key it decrypts under (None: unknown, e.g. built by hand)."""

    c: tuple[np.ndarray, ...]
    level: int
    scale: float
    params: Parameters
    key_id: bytes | None = None

    @property
    def size(self) -> int:
        """Number of components (2, or 3 after a product before relinearization)."""
        return len(self.c)

    @property
    def levels_left(self) -> int:
        """How many rescalings this ciphertext can still take."""
        return self.level

    def __repr__(self) -> str:
        return (
            f"Ciphertext(level={self.level}/{self.params.L}, scale=2^{np.log2(self.scale):.2f}, "
            f"size={self.size}, N={self.params.N})"
        )


def with_scale(ct: Ciphertext, scale: float) -> Ciphertext:
    """The same ciphertext read at another scale: its slots are multiplied by ct.scale / scale.

    Free and exact (no level, no noise); how a known factor is folded into the scale
    (NEXUS: the factor N of decompression; bootstrapping: K q0 and q0 / (2 pi Delta))."""
    return Ciphertext(ct.c, ct.level, float(scale), ct.params, ct.key_id)
