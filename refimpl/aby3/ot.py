"""Three-party oblivious transfer (ABY3 §5.4.1), the building block of truncation and bit injection.

Sender S holds messages m_0, m_1; receiver R and helper H both know the choice bit c;
S and H share masks w_0, w_1 (PRSS key of S and H).
    S -> R: (m_0 ^ w_0, m_1 ^ w_1);   H -> R: w_c;   R outputs m_c = (m_c ^ w_c) ^ w_c.
R learns m_c only (m_{1-c} stays masked by w_{1-c}); S and H receive nothing. 1 round,
3 messages of `nbits` bits per element. Vectorized: c is an array of 0/1 words.
"""

from __future__ import annotations

import numpy as np

from refimpl.aby3.fixed import U64
from refimpl.aby3.party import Party
from refimpl.aby3.shares import recv_words, send_words


def _mask(nbits: int) -> np.uint64:
    return U64((1 << nbits) - 1) if nbits < 64 else U64(0xFFFFFFFFFFFFFFFF)


def ot3_send(p: Party, receiver: int, helper: int, m0: np.ndarray, m1: np.ndarray, nbits: int = 64) -> None:
    """Sender's part: mask both messages with the masks shared with the helper, send them to R."""
    k = _mask(nbits)
    w0 = p.prss.pair(helper, m0.shape) & k
    w1 = p.prss.pair(helper, m0.shape) & k
    # sender sends (m_0 ^ w_0, m_1 ^ w_1) to the receiver: 2 x nbits per element
    send_words(p, receiver, np.concatenate([((m0 & k) ^ w0).ravel(), ((m1 & k) ^ w1).ravel()]), nbits)


def ot3_help(p: Party, sender: int, receiver: int, c: np.ndarray, nbits: int = 64) -> None:
    """Helper's part: it knows c and the masks; sends w_c to the receiver."""
    k = _mask(nbits)
    w0 = p.prss.pair(sender, c.shape) & k
    w1 = p.prss.pair(sender, c.shape) & k
    send_words(p, receiver, np.where(c.astype(bool), w1, w0), nbits)  # helper sends w_c


def ot3_recv(p: Party, sender: int, helper: int, c: np.ndarray, nbits: int = 64) -> np.ndarray:
    """Receiver's part: returns m_c."""
    n = c.size
    both = recv_words(p, sender, (2 * n,), nbits)
    wc = recv_words(p, helper, c.shape, nbits)
    mc = np.where(c.astype(bool).ravel(), both[n:], both[:n]).reshape(c.shape)
    return mc ^ wc
