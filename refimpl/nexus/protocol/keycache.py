"""What the NEXUS server holds per client, and the cache that bounds it (ours).

`ClientKeys`: one client's public key material (public, relinearization, Galois and
encapsulation keys) and the bytes each key's arrays hold in memory; `KeyCache`: client id ->
ClientKeys, least recently used first, bounded by those bytes (`--key-cache-bytes`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from refimpl.ckks.keys import SwitchingKey

from .wire import ProtocolError


@dataclass
class ClientKeys:
    """What the server holds for one client: public key material only, and its bytes in memory."""

    public: object = None
    relin: SwitchingKey | None = None
    galois: dict = field(default_factory=dict)
    enc_down: SwitchingKey | None = None
    enc_up: SwitchingKey | None = None
    key_bytes: int = 0  # bytes received (serialized)
    held: dict = field(default_factory=dict)  # role (or "galois:g") -> bytes of its arrays in memory
    evaluator: object = None
    bootstrapper: object = None

    @property
    def held_bytes(self) -> int:
        return sum(self.held.values())


def same_secret(keys: ClientKeys, x, what: str) -> None:
    """x (a key or a query ciphertext) is of the secret key the client's earlier keys are of (their
    key ids, refimpl.ckks.keys): else one ProtocolError before anything is stored or evaluated."""
    known = {k.key_id for k in (keys.public, keys.relin, keys.enc_up, *keys.galois.values())
             if k is not None and k.key_id is not None}
    if x.key_id is not None and known and x.key_id not in known:
        raise ProtocolError(f"the {what} is of secret key {x.key_id.hex()}, the keys this client sent before are of "
                            f"{', '.join(sorted(k.hex() for k in known))}: send the keys and queries of one key pair")


def held_nbytes(key) -> int:
    """Bytes of a deserialized key's arrays in memory (a public key: its two polynomials; a
    switching key: b, and a when it is kept expanded)."""
    if isinstance(key, SwitchingKey):
        b = sum(np.asarray(x).nbytes for x in key.b)
        return 2 * b if key.expand else b
    return sum(np.asarray(x).nbytes for x in (key.b, key.a))


class KeyCache:
    """Client id -> ClientKeys, least recently used first, bounded by the bytes of the keys held
    in memory (ours): adding a key evicts other clients' keys, oldest first, until the total fits
    `limit`; one client's keys alone may not exceed it; at most max_clients entries."""

    max_clients = 4096  # entries, keys or not: a flood of HELLOs cannot grow the table without bound

    def __init__(self, limit: int):
        self.limit, self.total = int(limit), 0
        self.entries: OrderedDict[str, ClientKeys] = OrderedDict()
        self.lock = threading.Lock()
        self.evicted = 0

    def get(self, cid: str) -> ClientKeys:
        with self.lock:
            keys = self.entries.setdefault(cid, ClientKeys())
            self.entries.move_to_end(cid)
            while len(self.entries) > self.max_clients:
                _, old = self.entries.popitem(last=False)
                self.total -= old.held_bytes
                self.evicted += 1
            return keys

    def __contains__(self, cid) -> bool:
        return cid in self.entries

    def __getitem__(self, cid) -> ClientKeys:
        return self.entries[cid]

    def __len__(self) -> int:
        return len(self.entries)

    def charge(self, cid: str, keys: ClientKeys, slot: str, nbytes: int) -> None:
        """Account `nbytes` for key `slot` of client `cid` (replacing its previous size); evict
        the least recently used other clients while the total exceeds the limit."""
        with self.lock:
            new_total = keys.held_bytes - keys.held.get(slot, 0) + nbytes
            if new_total > self.limit:
                raise ProtocolError(f"this client's keys would hold {new_total:,} bytes, above the server's key cache "
                                    f"of {self.limit:,} bytes (--key-cache-bytes)")
            self.total += nbytes - keys.held.get(slot, 0)
            keys.held[slot] = nbytes
            self.entries[cid] = keys
            self.entries.move_to_end(cid)
            for other in list(self.entries):
                if self.total <= self.limit:
                    break
                if other != cid:
                    self.total -= self.entries.pop(other).held_bytes
                    self.evicted += 1
