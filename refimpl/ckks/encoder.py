"""CKKS encoding: the canonical embedding (slots) and coefficient encoding.

Slots: slot j is the evaluation m(zeta^(5^j mod 2N)) at a primitive 2N-th root zeta = e^(i pi/N),
j = 0 .. N/2 - 1 (the conjugate roots hold the conjugates). The embedding is computed with one
length-N FFT of the twisted coefficients m_i zeta^i (the evaluations at all odd powers
zeta^(2k+1) form a DFT), and the slots are read at the indices k with 2k + 1 = 5^j mod 2N.
`vandermonde_encode/decode` compute the same maps with the explicit Vandermonde matrix, as the
test oracle.

Coefficient encoding (NEXUS compression): value i goes into coefficient i, times the scale.

Reference: Cheon, Kim, Kim, Song, "Homomorphic encryption for arithmetic of approximate
numbers", ASIACRYPT 2017, section 3.1.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .ciphertext import Plaintext
from .checks import check_operand, check_scale
from .errors import CKKSError
from .params import Parameters


@lru_cache(maxsize=None)
def slot_indices(N: int) -> tuple[np.ndarray, np.ndarray]:
    """(k_j, k'_j): evaluation indices of slot j and of its conjugate, 2k+1 = +-5^j mod 2N."""
    M = 2 * N
    e = np.ones(N // 2, dtype=np.int64)
    for j in range(1, N // 2):
        e[j] = e[j - 1] * 5 % M
    return (e - 1) // 2, (M - e - 1) // 2


@lru_cache(maxsize=None)
def _twist(N: int) -> np.ndarray:
    return np.exp(1j * np.pi * np.arange(N) / N)


def embed(coeffs: np.ndarray) -> np.ndarray:
    """Real coefficients [N] -> the N/2 slot values m(zeta^(5^j))."""
    N = coeffs.shape[-1]
    evals = np.fft.ifft(coeffs * _twist(N), axis=-1) * N  # evals[k] = m(zeta^(2k+1))
    return evals[..., slot_indices(N)[0]]


def unembed(z: np.ndarray, N: int) -> np.ndarray:
    """N/2 slot values -> the real coefficients of the polynomial that holds them."""
    k, kc = slot_indices(N)
    evals = np.zeros(z.shape[:-1] + (N,), dtype=np.complex128)
    evals[..., k] = z
    evals[..., kc] = np.conj(z)
    return (np.fft.fft(evals, axis=-1) / N * np.conj(_twist(N))).real


def vandermonde_decode(coeffs: np.ndarray) -> np.ndarray:
    """Oracle: slots by the explicit sum m(zeta^(5^j)) = sum_i m_i zeta^(i 5^j)."""
    N = len(coeffs)
    e = (slot_indices(N)[0] * 2 + 1)
    V = np.exp(1j * np.pi * np.outer(e, np.arange(N)) / N)
    return V @ coeffs


def vandermonde_encode(z: np.ndarray, N: int) -> np.ndarray:
    """Oracle: coefficients by solving the full (slots + conjugates) Vandermonde system."""
    k, kc = slot_indices(N)
    e = np.concatenate([2 * k + 1, 2 * kc + 1])
    V = np.exp(1j * np.pi * np.outer(e, np.arange(N)) / N)
    return np.linalg.solve(V, np.concatenate([z, np.conj(z)])).real


def round_to_rns(values: np.ndarray, params: Parameters, basis: tuple[int, ...]) -> np.ndarray:
    """round(values) (float64 [N], any magnitude) to residues [len(basis), N], exactly."""
    v = np.rint(np.asarray(values, dtype=np.float64))
    if not np.all(np.isfinite(v)):
        raise CKKSError("cannot encode NaN or infinite values")
    ctx = params.ctx
    big = np.abs(v) >= 2.0**62
    out = ctx.from_int(np.where(big, 0.0, v).astype(np.int64), basis)
    if big.any():
        # v = m 2^e exactly, with a 53-bit integer mantissa m and e > 0
        mant, ex = np.frexp(v[big])
        m = (mant * 2.0**53).astype(np.int64)
        e = ex.astype(np.int64) - 53
        uniq, where = np.unique(e, return_inverse=True)
        pow2 = np.array([[pow(2, int(x), ctx.primes[i]) for x in uniq] for i in basis], dtype=np.uint64)
        out[:, big] = ctx.mul(ctx.from_int(m, basis), np.ascontiguousarray(pow2[:, where]), basis)
    return out


def centered_floats(poly_coeff: np.ndarray, params: Parameters, basis: tuple[int, ...]) -> np.ndarray:
    """Coefficient-domain residues -> centered values as float64, from the first one or two limbs.

    Exact while |value| < q_0 q_1 / 2 (Garner: x = a_0 + q_0 t with t = (a_1 - a_0) q_0^-1 mod q_1)."""
    q0 = params.ctx.primes[basis[0]]
    a0 = poly_coeff[0].astype(np.int64)
    a0 = np.where(a0 > q0 // 2, a0 - q0, a0)  # centered mod q_0
    if len(basis) == 1:
        return a0.astype(np.float64)
    q1 = params.ctx.primes[basis[1]]
    inv = pow(q0, -1, q1)
    d = np.mod(poly_coeff[1].astype(np.int64) - np.mod(a0, q1), q1).astype(np.uint64)
    t = params.ctx.mul_int(d[None, :], inv, (basis[1],))[0].astype(np.int64)
    t = np.where(t > q1 // 2, t - q1, t)
    return a0.astype(np.float64) + float(q0) * t.astype(np.float64)


class Encoder:
    """Encodes vectors into plaintexts and back, for one parameter set."""

    def __init__(self, params: Parameters):
        self.params = params

    def encode(self, z, level: int | None = None, scale: float | None = None) -> Plaintext:
        """Up to N/2 complex (or real) values into the slots, zero-padded; NTT domain at `level`."""
        p = self.params
        z = np.asarray(z, dtype=np.complex128).ravel()
        if z.size > p.slots:
            raise CKKSError(f"at most N/2 = {p.slots} slots, got {z.size} values")
        full = np.zeros(p.slots, dtype=np.complex128)
        full[: z.size] = z
        return self._encode_coeffs(unembed(full, p.N), level, scale)

    def encode_extended(self, z, level: int, scale: float) -> np.ndarray:
        """The plaintext encode(z, level, scale) with the rows of the special primes P as well:
        residues over Q_l P (NTT domain), for products in the extended basis (double hoisting)."""
        p = self.params
        z = np.asarray(z, dtype=np.complex128).ravel()
        full = np.zeros(p.slots, dtype=np.complex128)
        full[: z.size] = z
        return self._encode_coeffs(unembed(full, p.N), level, scale, extended=True).poly

    def encode_coeffs(self, values, level: int | None = None, scale: float | None = None) -> Plaintext:
        """Up to N real values straight into the coefficients (NEXUS compression)."""
        p = self.params
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size > p.N:
            raise CKKSError(f"at most N = {p.N} coefficients, got {v.size} values")
        full = np.zeros(p.N)
        full[: v.size] = v
        return self._encode_coeffs(full, level, scale)

    def _encode_coeffs(self, coeffs: np.ndarray, level, scale, extended: bool = False) -> Plaintext:
        p = self.params
        level = p.L if level is None else level
        if not 0 <= level <= p.L:
            raise CKKSError(f"level must be in [0, {p.L}], got {level}")
        scale = p.scale if scale is None else float(scale)
        check_scale(p, scale, level, "Encoder.encode", "requested scale")
        basis = p.q_basis(level)
        scaled = coeffs * scale
        peak = np.log2(np.max(np.abs(scaled), initial=1.0))
        log_ql = sum(np.log2(float(p.q[i])) for i in basis)
        if peak >= log_ql - 1:
            raise CKKSError(
                f"encoded values reach 2^{peak:.1f}, beyond the modulus (2^{log_ql:.0f} at level "
                f"{level}): lower the scale or the values"
            )
        if extended:  # the rows of P too (Plaintext.poly then has level + 1 + |P| rows)
            basis = basis + p.p_basis
        res = round_to_rns(scaled, p, basis)
        return Plaintext(p.ctx.ntt(res, basis), level, scale, p)

    def decode(self, pt: Plaintext) -> np.ndarray:
        """The N/2 complex slot values of a plaintext."""
        return embed(self.decode_coeffs(pt))

    def decode_coeffs(self, pt: Plaintext) -> np.ndarray:
        """The N real coefficients of a plaintext, divided by its scale."""
        p = self.params
        check_operand(p, pt, "Encoder.decode", "plaintext")
        basis = p.q_basis(pt.level)
        take = basis[: min(2, len(basis))]
        coeff = p.ctx.intt(pt.poly[: len(take)], take)
        return centered_floats(coeff, p, take) / pt.scale
