"""The one cryptographic randomness source of refimpl (ours): every secret comes from here.

What draws from it: CKKS secret keys, errors and encryption randomness (refimpl.ring.sampling),
ABY3 PRSS keys, PRSS streams and each party's private coins (refimpl.aby3.prss, party).

Construction. A `Stream` is the AES-256-CTR keystream of a 32-byte key (the `cryptography`
package, OpenSSL underneath: about 1.3 GB/s against 0.25 GB/s for SHAKE-256 on the machine
this was measured on; see refimpl/bench/csprng.py). Keys come from the operating system
(`secrets.token_bytes`). A stream that makes secrets erases its key after every read
("fast key erasure", Bernstein 2017; the backtracking resistance of NIST SP 800-90A): each
read produces 32 extra bytes that become the next key, so whoever captures the state later
cannot recompute an earlier output, the secret key among them.

Deterministic streams (the same output for everyone who knows the key):
  * a PRSS key's PRG, drawn by both holders in the same order (ABY3 §2.2),
  * the expansion of a public seed into a public uniform polynomial (`expand_seed`),
  * the explicit, loudly named insecure mode for tests and examples (`insecure_key`), which
    derives a key from a small integer seed with SHA-256 and a label (domain separation).
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KEY_BYTES = 32
_ZERO_IV = bytes(16)


def os_key() -> bytes:
    """A fresh 256-bit key from the operating system's generator."""
    return secrets.token_bytes(KEY_BYTES)


def insecure_key(seed: int, label: str) -> bytes:
    """INSECURE: a key derived from a small integer seed (anyone who knows the seed knows the key).

    For reproducible tests and examples only; `label` separates the streams of one seed."""
    return hashlib.sha256(f"refimpl insecure seed|{label}|{int(seed)}".encode()).digest()


class Stream:
    """The AES-256-CTR keystream of `key`; `erase=True` rekeys after every read (fast key erasure).

    Reads are deterministic in the key and the sequence of read sizes."""

    def __init__(self, key: bytes, erase: bool = True):
        if len(key) != KEY_BYTES:
            raise ValueError(f"a stream key has {KEY_BYTES} bytes, got {len(key)}")
        self.erase = erase
        self._key = bytes(key)
        self._enc = None if erase else Cipher(algorithms.AES(self._key), modes.CTR(_ZERO_IV)).encryptor()

    def read(self, n: int) -> bytes:
        """n pseudo-random bytes."""
        n = int(n)
        if n < 0:
            raise ValueError(f"cannot read {n} bytes")
        if not self.erase:
            return self._enc.update(bytes(n))
        out = Cipher(algorithms.AES(self._key), modes.CTR(_ZERO_IV)).encryptor().update(bytes(n + KEY_BYTES))
        self._key = out[:KEY_BYTES]  # the old key is gone: earlier outputs cannot be recomputed
        return out[KEY_BYTES:]

    def words(self, n: int) -> np.ndarray:
        """n uniform uint64 words (a writable array)."""
        return np.frombuffer(self.read(8 * int(n)), dtype="<u8").astype(np.uint64)

    def state(self) -> bytes:
        """The current key: what an attacker who reads this process's memory now would get."""
        return self._key


def expand_seed(seed: int | bytes, label: str) -> Stream:
    """The deterministic stream of a public seed (an XOF made of SHA-256 and AES-256-CTR)."""
    raw = seed if isinstance(seed, bytes) else int(seed).to_bytes(8, "little", signed=False)
    return Stream(hashlib.sha256(b"refimpl public seed|" + label.encode() + b"|" + raw).digest(), erase=False)
