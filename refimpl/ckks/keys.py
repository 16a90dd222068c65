"""Key generation: secret, public, and hybrid key-switching keys (relinearization, Galois).

Secret s: uniform ternary, or sparse ternary with Hamming weight h. Public key (b, a) with
b = -a s + e over Q_L. A switching key from s' to s has one pair per digit D_j of the chain:
    b_j = -a_j s + e_j + P [Q/Q_j ((Q/Q_j)^-1 mod Q_j)] s'   over Q_L P,      a_j uniform,
where the gadget factor is P mod q_i for q_i in D_j and 0 elsewhere (including mod P).
Relinearization: s' = s^2. Galois element k: s' = sigma_k(s) (rotation by r: k = 5^r mod 2N;
conjugation: k = 2N - 1). The uniform halves a_j are expanded from a stored 64-bit seed, so a
serialized key carries only b_j and the seeds (as SEAL does).

Reference: Han and Ki, CT-RSA 2020 (hybrid key switching with dnum digits); Cheon et al.,
SAC 2018 (full-RNS CKKS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ring.automorphism import automorphism_ntt
from ..ring.sampling import RandomSource, uniform_from_seed
from .params import Parameters


@dataclass(frozen=True, eq=False)
class SecretKey:
    """s as small integer coefficients and in the NTT domain over every prime (Q_L and P)."""

    coeffs: np.ndarray  # int64 [N]
    s_ntt: np.ndarray  # [L+1+K, N]
    params: Parameters


@dataclass(frozen=True, eq=False)
class PublicKey:
    """(b, a) over Q_L with b = -a s + e."""

    b: np.ndarray
    a: np.ndarray
    params: Parameters


@dataclass(frozen=True, eq=False)
class SwitchingKey:
    """Hybrid key-switching key: per digit j, (b[j], a[j]) over Q_L P (NTT), a[j] from a_seeds[j]."""

    b: tuple[np.ndarray, ...]
    a_seeds: tuple[int, ...]
    params: Parameters
    a: tuple[np.ndarray, ...] = field(default=())

    def __post_init__(self):
        if not self.a:  # expand the uniform halves from their seeds
            p = self.params
            object.__setattr__(self, "a", tuple(uniform_from_seed(s, p.ctx.q, p.N) for s in self.a_seeds))

    @property
    def nbytes(self) -> int:
        """Bytes held in memory (both halves expanded)."""
        return sum(x.nbytes for x in self.b) + sum(x.nbytes for x in self.a)


@dataclass(frozen=True, eq=False)
class EvaluationKeys:
    """What the evaluating party receives: relinearization key and Galois keys by element."""

    relin: SwitchingKey | None = None
    galois: dict[int, SwitchingKey] = field(default_factory=dict)


def galois_element(params: Parameters, rotation: int) -> int:
    """k = 5^r mod 2N: the automorphism that rotates the slots left by r (r may be negative)."""
    return pow(5, rotation % (params.N // 2), 2 * params.N)


def conjugation_element(params: Parameters) -> int:
    return 2 * params.N - 1


class KeyGenerator:
    """Generates every key of one parameter set from an injectable random source."""

    def __init__(self, params: Parameters, rng: RandomSource | None = None):
        self.params = params
        self.rng = rng if rng is not None else RandomSource()

    def _small_ntt(self, coeffs: np.ndarray, basis) -> np.ndarray:
        ctx = self.params.ctx
        return ctx.ntt(ctx.from_int(coeffs, basis), basis)

    def secret_key(self) -> SecretKey:
        p = self.params
        if p.secret == "sparse":
            s = self.rng.sparse_ternary(p.N, p.h)
        else:
            s = self.rng.ternary(p.N)
        all_basis = tuple(range(len(p.q) + len(p.p)))
        return SecretKey(s, self._small_ntt(s, all_basis), p)

    def public_key(self, sk: SecretKey) -> PublicKey:
        p = self.params
        basis = p.q_basis(p.L)
        ctx = p.ctx
        a = self.rng.uniform(ctx.moduli(basis), p.N)
        e = self._small_ntt(self.rng.gaussian(p.N, p.sigma), basis)
        b = ctx.sub(e, ctx.mul(a, sk.s_ntt[: p.L + 1], basis), basis)  # b = -a s + e
        return PublicKey(b, a, p)

    def switching_key(self, sk: SecretKey, s_from_ntt: np.ndarray) -> SwitchingKey:
        """Key that switches a ciphertext component under s' (NTT over all primes) to s."""
        p = self.params
        ctx = p.ctx
        full = tuple(range(len(p.q) + len(p.p)))
        P = 1
        for x in p.p:
            P *= x
        bs, seeds = [], []
        for digit in p.digits:
            seed = self.rng.seed()
            a = uniform_from_seed(seed, ctx.q, p.N)
            e = self._small_ntt(self.rng.gaussian(p.N, p.sigma), full)
            b = ctx.sub(e, ctx.mul(a, sk.s_ntt, full), full)  # -a s + e
            rows = list(digit)
            gadget = ctx.mul_rows(np.ascontiguousarray(s_from_ntt[rows]), [P % p.q[i] for i in rows], tuple(rows))
            b[rows] = ctx.add(b[rows], gadget, tuple(rows))  # + P s' on the digit's primes
            bs.append(b)
            seeds.append(seed)
        return SwitchingKey(tuple(bs), tuple(seeds), p)

    def relin_key(self, sk: SecretKey) -> SwitchingKey:
        full = tuple(range(len(self.params.q) + len(self.params.p)))
        return self.switching_key(sk, self.params.ctx.mul(sk.s_ntt, sk.s_ntt, full))

    def galois_key(self, sk: SecretKey, k: int) -> SwitchingKey:
        """Key for X -> X^k: switches from sigma_k(s) to s."""
        return self.switching_key(sk, automorphism_ntt(sk.s_ntt, k))

    def evaluation_keys(
        self, sk: SecretKey, rotations=(), conjugate: bool = False, elements=(), relin: bool = True
    ) -> EvaluationKeys:
        """Relinearization key and the Galois keys for the given rotations / elements only."""
        p = self.params
        ks = {galois_element(p, r) for r in rotations if r % p.slots} | {int(k) % (2 * p.N) for k in elements}
        if conjugate:
            ks.add(conjugation_element(p))
        return EvaluationKeys(
            relin=self.relin_key(sk) if relin else None,
            galois={k: self.galois_key(sk, k) for k in sorted(ks)},
        )
