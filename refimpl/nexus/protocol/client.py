"""The NEXUS client: tokenizes, embeds, compresses and encrypts; decrypts the Argmax selection vector.

    tokenize, embed (the client holds the embedding table)
    HELLO -> SETUP; KEY x k (public key material the server lacks, once per client)
    QUERY: the n x d input compressed (NEXUS Alg. 5: N values per ciphertext in the coefficients,
           compression.compress) or slot-packed (the model's layout, N/2 at best)
    RESULT -> decrypt the Argmax selection vector (NEXUS §3.4: the label, nothing more of the
           model's output); the logits only with reveal_logits=True, from a server that allows it

The secret key never leaves the Client object; n (the token count) and the attention mask are
public (the threat model of NEXUS and freeDiv). The client's id is the hash of a secret it
sends in its HELLO (over TLS on TCP); every later frame is sealed with an HMAC under the
session key (refimpl.nexus.protocol.wire: ours), so nobody else can replace its keys.

Reference: NEXUS §2 (system model), §3.1 and Alg. 5 (compression), §6 (bandwidth)
(Zhang et al., NDSS 2025).
"""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np

from refimpl.ckks import Decryptor, Encoder, Encryptor, KeyGenerator
from refimpl.ckks import serialize as ser
from refimpl.nexus import compression
from refimpl.progress import or_silent
from refimpl.ring.sampling import RandomSource

from .models import load_model
from .transport import Ledger
from .wire import (
    SECRET_BYTES, AuthenticationError, ProtocolError, client_id_of, decode_message, encode_message, resolve_params,
    seal, session_key,
)


class Client:
    """The NEXUS client: holds the secret key and the embedding table, sends bytes only."""

    def __init__(self, transport, model: str = "toy", params: str = "toy-2^10-deep", compress: bool = True,
                 seed: int | None = None, reveal_logits: bool = False, progress=None):
        """reveal_logits: ask for the logits (the model's whole output) instead of the Argmax
        selection vector; the server must allow it. progress: refimpl.progress's callback, once
        per key made ("client keys: <kind>", done, total)."""
        self.params, self.rc = resolve_params(params)
        self.model = load_model(model)
        self.t, self.model_name, self.params_name, self.compress = transport, self.model.name, params, compress
        t0 = time.perf_counter()
        self.kg = KeyGenerator(self.params, (RandomSource() if seed is None else RandomSource.insecure_seeded(seed)), expand_keys=False)  # keys are sent, not kept
        self.sk = self.kg.secret_key()  # never leaves this object
        self.pk = self.kg.public_key(self.sk)
        self.keygen_s = time.perf_counter() - t0
        self.secret = os.urandom(SECRET_BYTES)  # never sent outside the HELLO (TLS on TCP)
        self.client_id = client_id_of(self.secret)
        self.mac_key, self.seq, self.reveal_logits = None, 0, bool(reveal_logits)
        self.enc, self.encryptor = Encoder(self.params), Encryptor(self.pk, (RandomSource() if seed is None else RandomSource.insecure_seeded(seed + 1)))
        self.decryptor = Decryptor(self.sk)
        self.ledger = Ledger()
        self.overhead = getattr(transport, "prefix_bytes", 0)  # TCP: the u64 length before each frame
        self.progress = or_silent(progress)

    def _send(self, kind: str, header: dict, blobs=()) -> None:
        frame = encode_message(kind, {"client_id": self.client_id, **header}, list(blobs))
        if self.mac_key is not None:  # every frame after the first SETUP is sealed
            frame = seal(frame, self.mac_key, self.seq)
            self.seq += 1
        n = self.t.send(frame)
        self.ledger.count("sent", kind, n)

    def _recv(self, expect: str):
        while True:
            frame = self.t.recv()
            if frame is None:
                raise ProtocolError("the server closed the connection")
            kind, header, blobs = decode_message(frame, (expect, "progress"))
            self.ledger.count("received", kind, len(frame) + self.overhead)
            if kind != "progress":  # the server is still computing: the receive timeout starts again
                return header, blobs

    def _send_keys(self, setup: dict) -> None:
        """Public key material the server lacks, one key per message (the client keeps none)."""
        p, kg, sk = self.params, self.kg, self.sk
        t0 = time.perf_counter()
        for g in setup["missing_galois"]:
            if g % 2 == 0 or not 0 < g < 2 * p.N:
                raise ProtocolError(f"the server asked for an invalid Galois element {g}")
        missing = setup["missing"]
        say, done = self.progress, 0
        total = sum(k in missing for k in ("relin", "encapsulation")) + len(setup["missing_galois"])
        if "public" in missing:
            self._send("key", {"role": "public"}, [ser.serialize_public_key(self.pk)])
        if "relin" in missing:
            say("client keys: relinearization", done, total)
            self._send("key", {"role": "relin"}, [ser.serialize_switching_key(kg.relin_key(sk))])
            done += 1
        if "encapsulation" in missing:
            say("client keys: encapsulation", done, total)
            down, up = kg.encapsulation_keys(sk, kg.secret_key(hamming_weight=self.rc.encapsulation_h))
            self._send("key", {"role": "enc_down"}, [ser.serialize_switching_key(down)])
            self._send("key", {"role": "enc_up"}, [ser.serialize_switching_key(up)])
            done += 1
        levels = {int(g): int(lv) for g, lv in setup.get("galois_levels", [])}
        for g in setup["missing_galois"]:
            say("client keys: Galois", done, total)
            key = kg.galois_key(sk, g, levels.get(g))  # over Q_level P only: the level the server applies it at
            self._send("key", {"role": "galois", "element": g}, [ser.serialize_switching_key(key)])
            done += 1
        if total:
            say("client keys", total, total)
        self._send("keys_done", {})
        self.keygen_s += time.perf_counter() - t0

    def encrypt_query(self, x: np.ndarray, layout, setup: dict) -> tuple[list[bytes], list[bytes]]:
        """(compressed blobs, slot-packed blobs): both are built so that both sizes are real bytes."""
        p = self.params
        flat = np.asarray(x, dtype=np.float64).ravel()
        comp = []
        for c, size in enumerate(setup["chunks"]):
            scale = p.scale / np.sqrt(size)  # leaves land at sqrt(size) Delta: both roundings ~2^-(40 - log2(size)/2)
            ct = compression.compress(self.enc, self.encryptor, flat[c * p.N:(c + 1) * p.N],
                                      level=setup["compressed_level"], scale=scale)  # NEXUS Alg. 5, client
            comp.append(ser.serialize_ciphertext(ct))
        packed = [ser.serialize_ciphertext(self.encryptor.encrypt(self.enc.encode(v, level=setup["input_level"])))
                  for v in self.model.pack(x, layout)]
        return comp, packed

    def classify(self, sentence: str) -> dict:
        """One encrypted query: the label, the logits, bytes and seconds."""
        t_start = time.perf_counter()
        before = Counter(self.ledger.sent), Counter(self.ledger.received)
        x, mask = self.model.embed(sentence)  # the client holds the embedding table
        n = x.shape[0]
        self._send("hello", {"model": self.model_name, "params": self.params_name, "n": n, "mask": mask,
                             "compress": self.compress, "output": "logits" if self.reveal_logits else "argmax",
                             "client_secret": self.secret.hex()})
        setup, _ = self._recv("setup")
        if self.mac_key is None and "nonce" in setup:
            if setup.get("client_id") != self.client_id:
                raise AuthenticationError("the server names another client id than the hash of our secret")
            self.mac_key = session_key(self.secret, bytes.fromhex(setup["nonce"]))
        keygen_before = self.keygen_s
        self._send_keys(setup)
        t0 = time.perf_counter()
        layout = self.model.layout(n, self.params.slots)
        comp, packed = self.encrypt_query(x, layout, setup)
        t1 = time.perf_counter()
        self._send("query", {"compressed": self.compress}, comp if self.compress else packed)
        result, blobs = self._recv("result")
        t2 = time.perf_counter()
        vectors = [self.enc.decode(self.decryptor.decrypt(ser.deserialize_ciphertext(b, self.params))).real
                   for b in blobs]
        if result.get("output") == "logits":
            logits = np.asarray(self.model.unpack(vectors, layout), dtype=np.float64)
            selection = None
        else:
            logits, selection = None, np.asarray(self.model.unpack_argmax(vectors, layout), dtype=np.float64)
        t3 = time.perf_counter()
        sent = self.ledger.sent - before[0]
        recv = self.ledger.received - before[1]
        return {
            "sentence": sentence, "n": n,
            "label": self.model.labels[int(np.argmax(logits if selection is None else selection))],
            "output": result.get("output"), "selection": None if selection is None else selection.tolist(),
            "logits": None if logits is None else logits.tolist(), "compressed": self.compress,
            "bytes": {
                "keys": sent["keys"], "query": sent["query"], "result": recv["result"],
                "control": sent["control"] + recv["control"],
                "query_compressed": sum(map(len, comp)), "query_uncompressed": sum(map(len, packed)),
                "query_cts_compressed": len(comp), "query_cts_uncompressed": len(packed),
                "result_at_computed_level": result["result_bytes_at_computed_level"],
            },
            "seconds": {"keygen": self.keygen_s - keygen_before, "encrypt": t1 - t0,
                        "server_expand": result["expand_s"], "server_forward": result["forward_s"],
                        "round_trip": t2 - t1, "decrypt": t3 - t2, "total": t3 - t_start},
            "bootstraps": result["bootstraps"], "input_bootstraps": result["input_bootstraps"],
            "expand_mode": result["expand_mode"], "trace": result["trace"], "plan": setup.get("plan"),
            "security": setup["security"],
        }
