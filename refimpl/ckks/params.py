"""CKKS parameters: ring degree, the RNS chain, special primes, digits, scale, secret distribution.

Word size: residues are uint64 with primes below 2^61 (refimpl.ring.modarith), so one prime
carries a whole level: the default chain is one ~60-bit q_0 (the decryption headroom), L scaling
primes of ~40 bits (the scale Delta = 2^40), and special primes P of ~60 bits for hybrid key
switching. This is the layout of OpenFHE's FIXEDMANUAL default and of the peers' benchmarks,
so modulus bits and limb counts both match the peers.

Security: log2(PQ) must not exceed the 128-bit bound of the HE standard for N (uniform ternary
secret), refimpl/constants.toml [ckks.max_log_qp_128], and the error width sigma must be at least
the standard's 8 / sqrt(2 pi); anything else is refused unless the caller passes `insecure=True`. A sparse secret (Hamming weight h) is weaker than a uniform one
at equal N and modulus; refimpl applies the same table and says so in `security_note`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from math import isfinite, log2, pi, prod, sqrt

from ..constants import C
from ..ring.primes import ntt_primes
from ..ring.rns import RNSContext
from .errors import InsecureParametersError, ParameterError

MAX_LOG_QP_128 = {int(k): v for k, v in C["ckks"]["max_log_qp_128"].items()}
MAX_LOG_QP_128_SPARSE = {tuple(int(x) for x in k.split("/")): v for k, v in C["ckks"]["max_log_qp_128_sparse"].items()}


def security_bound(N: int, secret: str, h: int | None) -> int | None:
    """The log2(PQ) bound for 128-bit security, or None when refimpl knows no estimate."""
    if secret == "sparse":
        return MAX_LOG_QP_128_SPARSE.get((N, h))
    return MAX_LOG_QP_128.get(N)
SIGMA = C["ckks"]["error_sigma"]
# The HE standard's 128-bit table assumes errors of width sigma = 8 / sqrt(2 pi) ~ 3.19: a
# narrower error (sigma = 0: no error at all) makes the same modulus insecure.
SIGMA_MIN_128 = 8.0 / sqrt(2.0 * pi)


@dataclass(frozen=True)
class Parameters:
    """Validated, immutable CKKS parameters. Build them with `Parameters.create` or a preset."""

    N: int
    q: tuple[int, ...]  # q_0 (decryption prime), q_1 .. q_L (scaling primes)
    p: tuple[int, ...]  # special primes, product P
    scale: float  # default encoding scale Delta
    digits: tuple[tuple[int, ...], ...]  # partition of range(L+1) into key-switching digits
    secret: str = "ternary"  # "ternary" (uniform {-1,0,1}) or "sparse" (Hamming weight h)
    h: int | None = None
    sigma: float = SIGMA
    insecure: bool = False
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        N = self.N
        if N < 4 or N & (N - 1):
            raise ParameterError(f"N must be a power of two >= 4, got {N}")
        primes = list(self.q) + list(self.p)
        if not self.q:
            raise ParameterError("the ciphertext chain q is empty")
        if len(set(primes)) != len(primes):
            raise ParameterError(f"primes must be distinct, got repeats in {primes}")
        for x in primes:
            if (x - 1) % (2 * N):
                raise ParameterError(f"prime {x} is not 1 mod 2N = {2 * N}: no negacyclic NTT")
            if x.bit_length() > 61:
                raise ParameterError(f"prime {x} has {x.bit_length()} bits; refimpl's words take at most 61")
        if not self.scale > 1:
            raise ParameterError(f"scale must be > 1, got {self.scale}")
        flat = sorted(i for d in self.digits for i in d)
        if flat != list(range(len(self.q))):
            raise ParameterError(f"digits {self.digits} must partition the chain indices 0..{len(self.q) - 1}")
        if self.p and max(prod(self.q[i] for i in d) for d in self.digits) > prod(self.p):
            raise ParameterError(
                f"special modulus P ({self.log_p:.1f} bits) must exceed every digit "
                f"(largest {max(self.digit_log_q):.1f} bits): add special primes or raise dnum"
            )
        if not self.p and len(self.digits) > 0:
            raise ParameterError("hybrid key switching needs at least one special prime")
        if self.secret not in ("ternary", "sparse"):
            raise ParameterError(f"secret must be 'ternary' or 'sparse', got {self.secret!r}")
        if self.secret == "sparse" and not (self.h and 0 < self.h <= N):
            raise ParameterError(f"a sparse secret needs a Hamming weight 0 < h <= N, got {self.h}")
        if not (isinstance(self.sigma, (int, float)) and isfinite(self.sigma) and self.sigma >= 0):
            raise ParameterError(f"the error width sigma must be a finite number >= 0, got {self.sigma!r}")
        if not self.insecure and self.sigma < SIGMA_MIN_128:
            raise InsecureParametersError(
                f"error width sigma = {self.sigma} is below {SIGMA_MIN_128:.4f}, the width the 128-bit bounds "
                f"assume (HE standard): use sigma >= {SIGMA_MIN_128:.4f} (default {SIGMA}), or pass insecure=True for tests"
            )
        bound = security_bound(N, self.secret, self.h)
        if not self.insecure and (bound is None or self.log_qp > bound):
            src = "HE standard" if self.secret == "ternary" else f"sparse secret h = {self.h}, Lattigo's estimate"
            raise InsecureParametersError(
                f"log2(PQ) = {self.log_qp:.1f} bits exceeds the 128-bit bound for N = {N} "
                f"({bound} bits, {src}): use a larger N or fewer/smaller primes, "
                "or pass insecure=True for tests"
            )

    # -- derived sizes
    @property
    def L(self) -> int:
        """The top level (levels are numbered L .. 0; a ciphertext at level l has l+1 limbs)."""
        return len(self.q) - 1

    @property
    def slots(self) -> int:
        return self.N // 2

    @property
    def dnum(self) -> int:
        return len(self.digits)

    @property
    def log_q(self) -> float:
        return sum(log2(x) for x in self.q)

    @property
    def log_p(self) -> float:
        return sum(log2(x) for x in self.p)

    @property
    def log_qp(self) -> float:
        return self.log_q + self.log_p

    @property
    def digit_log_q(self) -> list[float]:
        return [sum(log2(self.q[i]) for i in d) for d in self.digits]

    @property
    def security_bits(self) -> int:
        """128 if log2(PQ) is within the 128-bit bound known for (N, secret) and sigma is at least
        the standard's width, else 0."""
        bound = security_bound(self.N, self.secret, self.h)
        return 128 if bound is not None and self.log_qp <= bound and self.sigma >= SIGMA_MIN_128 else 0

    @property
    def security_note(self) -> str:
        bound = security_bound(self.N, self.secret, self.h)
        src = "HE standard, uniform ternary secret" if self.secret == "ternary" else (
            f"sparse secret h = {self.h}, Lattigo's N16QP1546H192 estimate")
        return (
            f"N = 2^{self.N.bit_length() - 1}, log2(PQ) = {self.log_qp:.0f} bits, bound {bound}: "
            + (f"128-bit ({src})" if self.security_bits else f"INSECURE (toy parameters; {src})")
        )

    # -- RNS context (tables are built once per parameter set)
    @cached_property
    def ctx(self) -> RNSContext:
        return RNSContext(self.N, list(self.q) + list(self.p))

    @property
    def p_basis(self) -> tuple[int, ...]:
        """Indices of the special primes in ctx."""
        return tuple(range(len(self.q), len(self.q) + len(self.p)))

    def q_basis(self, level: int) -> tuple[int, ...]:
        """Indices of q_0 .. q_level."""
        return tuple(range(level + 1))

    def fingerprint(self) -> bytes:
        """8 bytes that identify N, the primes and the digits (checked by every evaluator,
        decryptor and deserializer entry point; computed once)."""
        return self.fingerprint_bytes

    @cached_property
    def fingerprint_bytes(self) -> bytes:
        return hashlib.sha256(repr((self.N, self.q, self.p, self.digits)).encode()).digest()[:8]

    @cached_property
    def log_q_prefix(self) -> tuple[float, ...]:
        """log2(Q_l) for l = 0 .. L."""
        out, acc = [], 0.0
        for x in self.q:
            acc += log2(x)
            out.append(acc)
        return tuple(out)

    @staticmethod
    def create(
        N: int,
        levels: int,
        log_q0: int = 60,
        log_qi: int = 40,
        log_p: int = 60,
        num_p: int | None = None,
        dnum: int | None = None,
        scale: float | None = None,
        secret: str = "ternary",
        h: int | None = None,
        insecure: bool = False,
        name: str = "custom",
        sigma: float = SIGMA,
    ) -> "Parameters":
        """Primes of the requested sizes: q_0 (log_q0 bits), `levels` scaling primes (log_qi),
        special primes (log_p). Digits: `dnum` equal groups, or (dnum=None) the fewest groups
        that each fit under P. num_p=None takes the fewest special primes with P >= every digit
        when dnum is given, or one special prime otherwise."""
        if N < 4 or N & (N - 1):
            raise ParameterError(f"N must be a power of two >= 4, got {N}")
        if levels < 0:
            raise ParameterError(f"levels must be >= 0, got {levels}")
        # nominal sizes decide the digits; the special primes are drawn first (the largest
        # primes of their size) so that P exceeds a digit of equal nominal size
        nominal = [log_q0] + [log_qi] * levels
        n = len(nominal)
        if dnum is not None:
            if not 1 <= dnum <= n:
                raise ParameterError(f"dnum must be in [1, {n}], got {dnum}")
            size = -(-n // dnum)
            digits = tuple(tuple(range(i, min(i + size, n))) for i in range(0, n, size))
            if num_p is None:
                need = max(sum(nominal[i] for i in d) for d in digits)
                num_p = max(1, -(-need // log_p))
        else:
            num_p = num_p or 1
        p = ntt_primes(log_p, N, num_p)
        taken = tuple(p)
        q0 = ntt_primes(log_q0, N, 1, exclude=taken)
        taken += tuple(q0)
        qi = ntt_primes(log_qi, N, levels, exclude=taken) if levels else []
        chain = tuple(q0 + qi)
        if dnum is None:
            digits = choose_digits(chain, prod(p))
        return Parameters(
            N=N, q=chain, p=tuple(p), scale=float(scale if scale is not None else 2.0**log_qi),
            digits=digits, secret=secret, h=h, sigma=sigma, insecure=insecure, name=name,
        )


KS_SLACK_BITS = 10  # preferred margin of P over every digit: key-switching noise ~ Q_j |D_j| / P


def _balanced(chain: tuple[int, ...], dnum: int) -> tuple[tuple[int, ...], ...]:
    """dnum contiguous groups of nearly equal size, the smaller groups first (q_0 is the widest prime)."""
    n = len(chain)
    base, extra = divmod(n, dnum)
    sizes = [base] * (dnum - extra) + [base + 1] * extra
    out, i = [], 0
    for sz in sizes:
        out.append(tuple(range(i, i + sz)))
        i += sz
    return tuple(out)


def _greedy(chain: tuple[int, ...], cap: int) -> tuple[tuple[int, ...], ...] | None:
    """Contiguous digits packed by size, each product below cap (None if a prime exceeds cap)."""
    digits, cur, acc = [], [], 1
    for i, q in enumerate(chain):
        if q >= cap:
            return None
        if acc * q >= cap:
            digits.append(tuple(cur))
            cur, acc = [], 1
        cur.append(i)
        acc *= q
    digits.append(tuple(cur))
    return tuple(digits)


def choose_digits(chain: tuple[int, ...], P: int, slack_bits: int = KS_SLACK_BITS) -> tuple[tuple[int, ...], ...]:
    """The fewest digits that each stay `slack_bits` below P (else KS_SLACK_BITS, else merely below P):
    equal-count digits when they fit, else digits packed by size (mixed prime sizes).

    The key-switching error is about sum_j |D_j| Q_j e_j / P, so P >> Q_j keeps it below the
    encryption noise; with Q_j ~ P it costs about two bits of precision."""
    if max(chain) > P:
        raise ParameterError(f"a chain prime ({log2(max(chain)):.1f} bits) is larger than P ({log2(P):.1f} bits)")
    for slack in (slack_bits, KS_SLACK_BITS, 0):
        cap = P >> slack
        greedy = _greedy(chain, cap)
        if greedy is None:
            continue
        for dnum in range(1, len(greedy) + 1):
            digits = _balanced(chain, dnum)
            if all(prod(chain[i] for i in d) < cap for d in digits):
                return digits
        return greedy
    return tuple((i,) for i in range(len(chain)))


# Named presets. The 128-bit sets hold the modulus of the peers' benchmarks (one 60-bit prime
# plus 40-bit scaling primes) and fill the rest of the bound with special primes.
PRESETS = {
    "toy-1024": dict(N=1024, levels=4, log_q0=50, log_qi=30, log_p=50, num_p=2, insecure=True),
    "toy-4096": dict(N=4096, levels=6, log_q0=60, log_qi=40, log_p=60, num_p=2, insecure=True),
    "128-2^13": dict(N=2**13, levels=2, num_p=2, log_p=39),
    "128-2^14": dict(N=2**14, levels=7, num_p=2, log_p=49),
    "128-2^15": dict(N=2**15, levels=17, num_p=2),
    "128-2^16": dict(N=2**16, levels=35, num_p=5),
}


def preset(name: str) -> Parameters:
    """A named parameter set (see PRESETS)."""
    if name not in PRESETS:
        raise ParameterError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return Parameters.create(**PRESETS[name], name=name)
