"""Pseudo-random secret sharing (PRSS): correlated randomness with no communication.

Reference: ABY3 §2.2 (Araki et al. 2016, "zero sharing"); SPU prg_state.

Three keys k_0, k_1, k_2; key k_j is known to parties j and j-1, so party i holds k_i
(shared with party i-1) and k_{i+1} (shared with party i+1). Each key drives a PRG; both
holders draw from it in the same order (the parties run the same protocol code).
    zero share:      alpha_i = F(k_i) - F(k_{i+1}),  alpha_0 + alpha_1 + alpha_2 = 0
    random sharing:  r_i = F(k_i), party i holds (r_i, r_{i+1}): a replicated sharing of r

A fourth key k_pub, known to all, gives public coins (SPU's "public seed", the sum of
the parties' seeds). Setup here: `setup_keys(seed)` derives all keys from one seed, which
is what a simulator can do. A real deployment runs a one-time setup where party i samples k_i and
sends it to party i-1 over a private channel (as SPU does at link setup); after that no
party ever holds the third key. The PRG is numpy's PCG64 (a simulator PRG; a deployment
would use AES-CTR as SPU/yacl do).
"""

from __future__ import annotations

import numpy as np

from refimpl.aby3.fixed import U64


def setup_keys(seed: int) -> list[int]:
    """The three pairwise keys k_0, k_1, k_2 and a public key k_pub (simulator setup: from one seed)."""
    ss = np.random.SeedSequence(seed)
    return [int(s.generate_state(2, np.uint64)[0]) << 64 | int(s.generate_state(2, np.uint64)[1])
            for s in ss.spawn(4)]


class PRSS:
    """Party i's two PRGs: key k_i (shared with party i-1) and key k_{i+1} (shared with i+1)."""

    def __init__(self, party: int, key_own: int, key_next: int, key_public: int = 0) -> None:
        self.party = party
        self._public = np.random.Generator(np.random.PCG64(key_public))  # known to all three
        self._gen = {
            party: np.random.Generator(np.random.PCG64(key_own)),  # k_i, with party i-1
            (party + 1) % 3: np.random.Generator(np.random.PCG64(key_next)),  # k_{i+1}, with party i+1
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
        return self._gen[key].bit_generator.random_raw(n).astype(U64, copy=False).reshape(shape)

    def public(self, shape) -> np.ndarray:
        """Randomness all three parties know (a public coin; every party must make this call)."""
        n = int(np.prod(shape, dtype=np.int64))
        return self._public.bit_generator.random_raw(n).astype(U64, copy=False).reshape(shape)

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
