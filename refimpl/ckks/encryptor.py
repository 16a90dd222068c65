"""Encryption under the public or the secret key, and decryption.

Public key:  v ternary, e_0, e_1 Gaussian:  c = (v b + e_0 + m, v a + e_1)  over Q_l.
Secret key:  a uniform, e Gaussian:         c = (-a s + e + m, a).
Decryption:  m + e' = [c_0 + c_1 s (+ c_2 s^2)]_{Q_l}.
Both refuse operands of other parameters or of impossible shapes and scales (refimpl.ckks.checks);
the ciphertext carries the key's id, and decryption refuses a ciphertext of another key (ours).
Reference: Cheon, Kim, Kim, Song, ASIACRYPT 2017, section 3.4.
"""

from __future__ import annotations

from ..ring.sampling import RandomSource
from .checks import check_key, check_operand
from .ciphertext import Ciphertext, Plaintext
from .keys import PublicKey, SecretKey


class Encryptor:
    """Encrypts plaintexts with a public key (or, if given, the secret key)."""

    def __init__(self, key: PublicKey | SecretKey, rng: RandomSource | None = None):
        self.key = key
        self.params = key.params
        self.rng = rng if rng is not None else RandomSource()

    def _small(self, coeffs, basis):
        ctx = self.params.ctx
        return ctx.ntt(ctx.from_int(coeffs, basis), basis)

    def encrypt(self, pt: Plaintext) -> Ciphertext:
        check_operand(self.params, pt, "Encryptor.encrypt", "plaintext")
        p = self.params
        ctx = p.ctx
        basis = p.q_basis(pt.level)
        rows = slice(0, pt.level + 1)
        if isinstance(self.key, SecretKey):
            a = self.rng.uniform(ctx.moduli(basis), p.N)
            e = self._small(self.rng.gaussian(p.N, p.sigma), basis)
            c0 = ctx.add(ctx.sub(e, ctx.mul(a, self.key.s_ntt[rows], basis), basis), pt.poly, basis)
            return Ciphertext((c0, a), pt.level, pt.scale, p, self.key.key_id)
        v = self._small(self.rng.ternary(p.N), basis)
        e0 = self._small(self.rng.gaussian(p.N, p.sigma), basis)
        e1 = self._small(self.rng.gaussian(p.N, p.sigma), basis)
        b = self.key.b[rows]
        a = self.key.a[rows]
        c0 = ctx.add(ctx.add(ctx.mul(v, b, basis), e0, basis), pt.poly, basis)
        c1 = ctx.add(ctx.mul(v, a, basis), e1, basis)
        return Ciphertext((c0, c1), pt.level, pt.scale, p, self.key.key_id)


class Decryptor:
    """Decrypts with the secret key."""

    def __init__(self, sk: SecretKey):
        self.sk = sk
        self.params = sk.params

    def decrypt(self, ct: Ciphertext) -> Plaintext:
        check_operand(self.params, ct, "Decryptor.decrypt", "ciphertext")
        check_key(self.sk.key_id, (ct,), "Decryptor.decrypt")
        p = self.params
        ctx = p.ctx
        basis = p.q_basis(ct.level)
        s = self.sk.s_ntt[: ct.level + 1]
        m = ct.c[0]
        s_pow = s
        for ci in ct.c[1:]:
            m = ctx.add(m, ctx.mul(ci, s_pow, basis), basis)
            s_pow = ctx.mul(s_pow, s, basis)
        return Plaintext(m, ct.level, ct.scale, p)
