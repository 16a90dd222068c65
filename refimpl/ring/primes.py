"""NTT-friendly primes q = 1 mod 2N and primitive 2N-th roots of unity (sympy)."""

from __future__ import annotations

from functools import lru_cache

import sympy

from .modarith import MAX_PRIME_BITS


def ntt_primes(bits: int, N: int, count: int, exclude: tuple[int, ...] = (), below: int | None = None) -> list[int]:
    """The `count` largest primes q = 1 mod 2N with q < 2^bits (or < `below`), not in `exclude`.

    Searching downward from 2^bits keeps every prime within one bit of the requested size.
    """
    if not 2 <= bits <= MAX_PRIME_BITS:
        raise ValueError(f"prime size must be in [2, {MAX_PRIME_BITS}] bits, got {bits}")
    if N < 2 or N & (N - 1):
        raise ValueError(f"N must be a power of two, got {N}")
    m = 2 * N
    top = (1 << bits) if below is None else below
    q = ((top - 1) // m) * m + 1
    if q >= top:
        q -= m
    found: list[int] = []
    skip = set(exclude)
    while len(found) < count:
        if q < (1 << (bits - 1)):
            raise ValueError(f"only {len(found)} primes q = 1 mod {m} of {bits} bits exist, asked {count}")
        if q not in skip and sympy.isprime(q):
            found.append(q)
        q -= m
    return found


@lru_cache(maxsize=None)
def primitive_root_2n(q: int, N: int) -> int:
    """A primitive 2N-th root of unity mod q (psi^N = -1): g^((q-1)/2N) for the least generator g."""
    if (q - 1) % (2 * N):
        raise ValueError(f"q = {q} is not 1 mod 2N = {2 * N}: no negacyclic NTT exists")
    if not sympy.isprime(q):
        raise ValueError(f"q = {q} is not prime")
    g = sympy.primitive_root(q)
    return pow(g, (q - 1) // (2 * N), q)
