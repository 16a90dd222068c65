"""Pseudo-random secret sharing (PRSS): correlated randomness with no communication.

Reference: ABY3 §2.2 (Araki et al. 2016, "zero sharing"); SPU prg_state.

Three keys k_0, k_1, k_2; key k_j is known to parties j and j-1, so party i holds k_i
(shared with party i-1) and k_{i+1} (shared with party i+1). Each key drives a PRG; both
holders draw from it in the same order (the parties run the same protocol code).
    zero share:      alpha_i = F(k_i) - F(k_{i+1}),  alpha_0 + alpha_1 + alpha_2 = 0
    random sharing:  r_i = F(k_i), party i holds (r_i, r_{i+1}): a replicated sharing of r

A fourth key k_pub, known to all, gives public coins (SPU's "public seed", the sum of
the parties' seeds).

Setup. In a deployment (refimpl.aby3.tcp, `exchange_keys`) party i samples k_i from the
operating system and sends it to party i-1 once per session over an encrypted channel, and
each party sends a 32-byte contribution to both others; k_pub is the hash of the three
contributions. After that no party ever holds the third key. The simulator's `fresh_keys()`
draws the same keys from the OS in one process; `setup_keys(seed)` derives them from one small
seed and is INSECURE (any party that knows the seed holds all three keys): tests only.
The PRG of a key is AES-256-CTR (refimpl.csprng), as in SPU/yacl.
"""

from __future__ import annotations

import hashlib

import numpy as np

from refimpl.csprng import Stream, insecure_key, os_key


def setup_keys(seed: int) -> list[bytes]:
    """INSECURE: k_0, k_1, k_2 and k_pub all derived from one seed (reproducible tests only)."""
    return [insecure_key(seed, f"aby3 prss k{j}") for j in range(3)] + [insecure_key(seed, "aby3 prss public")]


def fresh_keys() -> list[bytes]:
    """k_0, k_1, k_2 and k_pub from the operating system (the simulator's secure setup)."""
    return [os_key() for _ in range(4)]


def public_key_from(contributions: list[bytes]) -> bytes:
    """k_pub from the three parties' contributions, in party order."""
    return hashlib.sha256(b"refimpl aby3 public coins|" + b"".join(contributions)).digest()


class PRSS:
    """Party i's two PRGs: key k_i (shared with party i-1) and key k_{i+1} (shared with i+1)."""

    def __init__(self, party: int, key_own: bytes, key_next: bytes, key_public: bytes) -> None:
        self.party = party
        self._public = Stream(key_public, erase=False)  # known to all three
        self._gen = {
            party: Stream(key_own, erase=False),  # k_i, with party i-1
            (party + 1) % 3: Stream(key_next, erase=False),  # k_{i+1}, with party i+1
        }

    def key_with(self, other: int) -> int:
        """Index of the key party i shares with `other` (k_i with i-1, k_{i+1} with i+1)."""
        i = self.party
        if other == (i - 1) % 3:
            return i
        if other == (i + 1) % 3:
            return (i + 1) % 3
        raise ValueError(f"party {i} shares no key with party {other}")

    def draw(self, key: int, shape) -> np.ndarray:
        """Uniform uint64 words from PRG k_key; both holders of the key must make this call."""
        if key not in self._gen:
            raise ValueError(f"party {self.party} does not hold key k_{key}")
        n = int(np.prod(shape, dtype=np.int64))
        return self._gen[key].words(n).reshape(shape)

    def public(self, shape) -> np.ndarray:
        """Randomness all three parties know (a public coin; every party must make this call)."""
        n = int(np.prod(shape, dtype=np.int64))
        return self._public.words(n).reshape(shape)

    def pair(self, other: int, shape) -> np.ndarray:
        """Randomness common to this party and `other` (the third party cannot compute it)."""
        return self.draw(self.key_with(other), shape)

    def rand(self, shape) -> tuple[np.ndarray, np.ndarray]:
        """Party i's half (r_i, r_{i+1}) of a replicated sharing of a random r (no communication)."""
        i = self.party
        return self.draw(i, shape), self.draw((i + 1) % 3, shape)

    def zero(self, shape) -> np.ndarray:
        """alpha_i with alpha_0 + alpha_1 + alpha_2 = 0 mod 2^64 (arithmetic zero share)."""
        a, b = self.rand(shape)
        return a - b

    def zero_xor(self, shape) -> np.ndarray:
        """beta_i with beta_0 ^ beta_1 ^ beta_2 = 0 (boolean zero share)."""
        a, b = self.rand(shape)
        return a ^ b
