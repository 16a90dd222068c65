"""Replicated secret shares (ABY3 §2.2): arithmetic over Z_2^64 and boolean (XOR), bit-packed.

A secret x is split x = x_0 + x_1 + x_2 mod 2^64 (arithmetic) or x = x_0 ^ x_1 ^ x_2
(boolean, each uint64 word carrying `nbits` packed bits of one element). Party i holds
the pair (x_i, x_{i+1}): any one party's pair is uniformly random, any two parties
together hold all three components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refimpl.aby3.fixed import U64
from refimpl.aby3.party import Party


@dataclass(frozen=True)
class AShare:
    """Party i's half (x_i, x_{i+1}) of an arithmetic sharing over Z_2^64."""

    a: np.ndarray  # x_i
    b: np.ndarray  # x_{i+1}
    session: int

    @property
    def shape(self) -> tuple:
        return self.a.shape

    def __getitem__(self, idx) -> "AShare":
        return AShare(self.a[idx], self.b[idx], self.session)

    def reshape(self, *shape) -> "AShare":
        return AShare(self.a.reshape(*shape), self.b.reshape(*shape), self.session)

    def transpose(self, *axes) -> "AShare":
        return AShare(self.a.transpose(*axes), self.b.transpose(*axes), self.session)


@dataclass(frozen=True)
class BShare:
    """Party i's half (x_i, x_{i+1}) of a boolean (XOR) sharing; `nbits` low bits per word are used."""

    a: np.ndarray  # x_i, uint64 words
    b: np.ndarray  # x_{i+1}
    session: int
    nbits: int = 64

    @property
    def shape(self) -> tuple:
        return self.a.shape


def check_same_run(p: Party, *xs) -> None:
    """Raise if a share comes from another protocol run (another session) or shapes disagree."""
    for x in xs:
        if isinstance(x, (AShare, BShare)) and x.session != p.session:
            raise ValueError(
                f"party {p.id}: a share from session {x.session} used in session {p.session} "
                "(shares from different protocol runs cannot be combined)"
            )


# ---- wire format: arrays of nbits-bit values, packed as tightly as the width allows ------

def _wire_dtype(nbits: int):
    for bits, dt in ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64)):
        if nbits <= bits:
            return dt
    raise ValueError(f"nbits = {nbits} > 64")


def pack(words: np.ndarray, nbits: int) -> np.ndarray:
    """The bytes that carry the low `nbits` bits of each word: 1, 2, 3, 4 or 8 bytes per word
    (the smallest that holds nbits), or for nbits < 8 bit-packed across words."""
    words = np.asarray(words, dtype=U64).ravel()
    nbytes = -(-nbits // 8)
    if nbits >= 8 and nbytes in (3, 5, 6, 7):  # e.g. 18-bit truncation messages: 3 bytes each
        return words.view(np.uint8).reshape(-1, 8)[:, :nbytes].copy()  # little-endian low bytes
    if nbits >= 8:
        return words.astype(_wire_dtype(nbits))
    if nbits in (1, 2, 4):  # 8 / nbits values per byte
        k = 8 // nbits
        v = np.zeros(-(-words.size // k) * k, dtype=np.uint8)
        v[: words.size] = words
        v = v.reshape(-1, k) << (np.arange(k, dtype=np.uint8) * nbits)
        return np.bitwise_or.reduce(v, axis=1)
    bits = ((words[:, None] >> np.arange(nbits, dtype=U64)) & U64(1)).astype(np.uint8)  # [n, nbits]
    return np.packbits(bits.ravel())


def unpack(data: np.ndarray, shape: tuple, nbits: int) -> np.ndarray:
    """Inverse of `pack`: uint64 words of the given shape."""
    n = int(np.prod(shape, dtype=np.int64))
    nbytes = -(-nbits // 8)
    if nbits >= 8 and nbytes in (3, 5, 6, 7):
        eight = np.zeros((n, 8), dtype=np.uint8)
        eight[:, :nbytes] = data.reshape(n, nbytes)
        return eight.view(U64).reshape(shape)
    if nbits >= 8:
        return data.astype(U64).reshape(shape)
    if nbits in (1, 2, 4):
        k = 8 // nbits
        v = (data[:, None] >> (np.arange(k, dtype=np.uint8) * nbits)) & np.uint8((1 << nbits) - 1)
        return v.ravel()[:n].astype(U64).reshape(shape)
    bits = np.unpackbits(data)[: n * nbits].reshape(n, nbits).astype(U64)
    return (bits << np.arange(nbits, dtype=U64)).sum(axis=1, dtype=U64).reshape(shape)


def send_words(p: Party, to: int, words: np.ndarray, nbits: int = 64) -> None:
    p.net.send(to, pack(words, nbits))


def recv_words(p: Party, frm: int, shape: tuple, nbits: int = 64) -> np.ndarray:
    return unpack(p.net.recv(frm), shape, nbits)


# ---- input and output --------------------------------------------------------------------

def share_input(p: Party, owner: int, x: np.ndarray | None = None, *, raw: bool = False) -> AShare:
    """Owner's secret x -> replicated arithmetic shares; 1 round, 2 ring elements per element.

    x_o = F(k_o) (owner and party o-1 draw it), x_{o+1} = F(k_{o+1}) (owner and party o+1),
    x_{o+2} = x - x_o - x_{o+1}: the owner sends it to parties o+1 and o-1.
    Only the owner passes x (float, encoded with p.fxp; or raw uint64 ring elements).
    Reference: ABY3 §5 ("input sharing"), with the first two components from PRSS.
    """
    if not 0 <= owner < 3:
        raise ValueError(f"owner must be party 0, 1 or 2, got {owner}")
    o, i = owner, p.id
    with p.net.scope("share_input"):
        if i == o:
            if x is None:
                raise ValueError(f"party {i} owns the input but passed x=None")
            v = np.asarray(x, dtype=U64) if raw else p.fxp.encode(x)
            x_o = p.prss.draw(o, v.shape)  # k_o, with party o-1
            x_o1 = p.prss.draw((o + 1) % 3, v.shape)  # k_{o+1}, with party o+1
            x_o2 = v - x_o - x_o1
            # owner holds (x_o, x_{o+1}); sends x_{o+2} to parties o+1 and o-1
            p.net.send((o + 1) % 3, x_o2)
            p.net.send((o - 1) % 3, x_o2)
            return AShare(x_o, x_o1, p.session)
        x_o2 = p.net.recv(o)
        if i == (o + 1) % 3:  # holds (x_{o+1}, x_{o+2})
            return AShare(p.prss.draw(i, x_o2.shape), x_o2, p.session)
        return AShare(x_o2, p.prss.draw(o, x_o2.shape), p.session)  # party o-1 holds (x_{o+2}, x_o)


def reveal(p: Party, x: AShare, to: int | None = None, *, raw: bool = False):
    """Open x to party `to` (or to all when None); 1 round, 1 ring element per receiving party.

    Party `to` holds (x_t, x_{t+1}) and receives x_{t+2} from party t+1.
    Returns decoded floats (raw uint64 with raw=True) at the receivers, None elsewhere.
    """
    check_same_run(p, x)
    if to is not None and to not in (0, 1, 2):
        raise ValueError(f"cannot reveal to party {to}: parties are 0, 1, 2")
    targets = (0, 1, 2) if to is None else (to,)
    with p.net.scope("reveal"):
        if (p.id - 1) % 3 in targets:  # party i+1 holds (x_{i+1}, x_{i+2}); sends x_{i+2} to party i
            p.net.send((p.id - 1) % 3, x.b)
        if p.id not in targets:
            return None
        v = x.a + x.b + p.net.recv(p.next)
    return v if raw else p.fxp.decode(v)


def reveal_bool(p: Party, x: BShare, to: int | None = None) -> np.ndarray | None:
    """Open a boolean sharing (same pattern as `reveal`, XOR instead of +)."""
    check_same_run(p, x)
    targets = (0, 1, 2) if to is None else (to,)
    with p.net.scope("reveal"):
        if (p.id - 1) % 3 in targets:
            send_words(p, (p.id - 1) % 3, x.b, x.nbits)
        if p.id not in targets:
            return None
        return x.a ^ x.b ^ recv_words(p, p.next, x.shape, x.nbits)
