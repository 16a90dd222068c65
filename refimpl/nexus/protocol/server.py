"""The NEXUS server: one model, one bootstrapping parameter set, public keys cached per client.

    client                                              server
    HELLO {model, params, n, mask, compress}   ----->
                                               <-----   SETUP {Galois elements, input level, missing keys}
    KEY x k (public key material only)         ----->   (once per client: cached by client id)
    QUERY compressed (or slot-packed) cts      ----->   expand (NEXUS Alg. 5), encrypted forward, bootstraps
                                               <-----   RESULT cts dropped to level 0

Non-interactive (NEXUS §2): one round trip per query; the server never holds the secret key.
It receives the public key, the relinearization key, the Galois keys it asks for (the model's
rotations, the bootstrapper's, the Subs elements N/2^i + 1 of decompression) and the two
sparse-secret encapsulation keys of the bootstrapper; wire.SERVER_KINDS lists the serialized
kinds it accepts, anything else is refused.

State: `Server` holds what all connections share (model, parameters, keys per client id in
`clients`, a KeyCache bounded by bytes); `ServerSession` holds one connection's state (its
HELLO, its authenticated client id and MAC key) and turns each frame into a reply frame.
refimpl.nexus.protocol.listener.serve runs each TCP (TLS) connection in its own thread with receive timeouts. The output is
the Argmax selection vector (NEXUS §3.4) unless the server reveals logits (reveal_logits).
Sessions, timeouts, limits, the key cache and the authentication are ours.

Reference: NEXUS §2 (system model), §3.1 and Alg. 5 (compression) (Zhang et al., NDSS 2025).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from refimpl.ckks import Ciphertext, EvaluationKeys, Evaluator
from refimpl.ckks import serialize as ser
from refimpl.ckks.bootstrap.bootstrapper import Bootstrapper
from refimpl.ckks.errors import CKKSError
from refimpl.ckks.keys import SwitchingKey, galois_element, key_digits, key_rows
from refimpl.nexus.bert.weights_store import StoreError, WeightStore
from refimpl.nexus.compression import PlacementError, expand_input, placement, subs_elements
from refimpl.nexus.counting import CountingBootstrapper
from refimpl.nexus.matmul import chunk_counts

from .keycache import ClientKeys, KeyCache, held_nbytes, same_secret
from .models import load_model
from .wire import (
    SECRET_BYTES, SERVER_KINDS, AuthenticationError, ProtocolError, blob_kind, ciphertext_nbytes, client_id_of,
    decode_message, encode_message, frame_limit, header_limit, resolve_params, session_key, unseal,
)

CLIENT_KINDS = ("hello", "key", "keys_done", "query")
DEFAULT_KEY_CLIENTS = 2  # the key cache holds this many clients' keys at the longest input by default


def key_levels(boot_levels: dict, model_elements, subs_elements_, out_level: int, compressed_level: int) -> dict[int, int]:
    """Galois element -> the level its key must cover: bootstrapping's own levels, the model's
    rotations at the bootstrapping output level (or, model_elements a dict, at the level it gives each),
    decompression at the compressed level (an element used by several gets the highest)."""
    levels = dict(boot_levels)
    model = model_elements if isinstance(model_elements, dict) else {k: out_level for k in model_elements}
    for k, lv in (*model.items(), *((k, compressed_level) for k in subs_elements_)):
        levels[k] = max(levels.get(k, -1), lv)
    return dict(sorted(levels.items()))


class Server:
    """The NEXUS server: one model, one bootstrapping parameter set, keys cached per client id."""

    def __init__(self, model: str = "toy", params: str = "toy-2^10-deep", record_dir: str | None = None,
                 log=None, expand: str = "bootstrap", key_cache_bytes: int | None = None,
                 reveal_logits: bool = False, insecure_no_auth: bool = False, progress=None):
        """expand: how compressed input reaches the forward's input level. "direct": the client
        encrypts one level above it and the server decompresses there (all levels: slow Subs,
        large query); "bootstrap": the client encrypts at level 1, the server decompresses on two
        limbs, places the values scaled by 1/B (B a public power of two bounding |x|), bootstraps
        each input ciphertext and multiplies by B (an integer: no level).
        key_cache_bytes: bound of the key cache (default DEFAULT_KEY_CLIENTS clients' keys at the
        longest input, `client_key_bound`); reveal_logits: answer clients that ask for logits
        (default: the Argmax selection vector only); insecure_no_auth: INSECURE, the weakened
        configuration of the attack tests (client ids unchecked, frames unauthenticated);
        progress: refimpl.progress's callback for the forward and each bootstrap (None: silent)."""
        if expand not in ("bootstrap", "direct"):
            raise ProtocolError(f"expand must be 'bootstrap' or 'direct', got {expand!r}")
        self.expand = expand
        self.params, self.rc = resolve_params(params)
        self.model = load_model(model)
        self.model_name, self.params_name = self.model.name, params
        self.boot_levels = Bootstrapper(Evaluator(self.params), self.rc).galois_levels()
        self.boot_elements = sorted(self.boot_levels)
        self.output_level = self.params.L - self.rc.depth
        self.compressed_level = 1 if expand == "bootstrap" else self.output_level + 1
        self.reveal_logits, self.insecure_no_auth = bool(reveal_logits), bool(insecure_no_auth)
        self.max_tokens = fitting_tokens(self.model, self.params.slots)
        self.header_limit = header_limit(self.max_tokens)
        self.frame_limit = frame_limit(self.params, self.max_query_cts(), self.header_limit)
        self.client_key_bound = self.key_bound(self.max_tokens)
        limit = DEFAULT_KEY_CLIENTS * self.client_key_bound if key_cache_bytes is None else int(key_cache_bytes)
        self.clients = KeyCache(limit)
        self.record_dir = record_dir
        self.received = 0
        self.lock = threading.Lock()  # received, record files
        self.compute = threading.Semaphore(1)  # one encrypted forward at a time: it uses every core
        self.log = log or (lambda *a: None)
        self.weights = None  # a weight store (use_weights): the BERT forward's diagonals encoded once (ours)
        self.progress = progress
        if record_dir:
            os.makedirs(record_dir, exist_ok=True)

    def use_weights(self, root) -> "WeightStore":
        """Open the weight store under `root` (`refimpl nexus precompute`) for this model and these
        parameters, every check (format version, parameter fingerprint, model checksum, SHA-256 of
        every file, the layout of its token count, the input level), one StoreError naming what
        differs; queries of its token count then take their diagonals from it (ours). Call it after
        any change of the model's ranges (they are part of the checksum)."""
        if not hasattr(self.model, "model"):
            raise StoreError("a weight store applies to BERT models only")
        store = WeightStore.open(root, self.params, self.model.model)
        m = store.manifest
        if m.get("input_level") != self.output_level:
            raise StoreError(f"{root}: made for inputs at level {m.get('input_level')}, this server's arrive at "
                             f"{self.output_level}: precompute the store for these parameters")
        err = store.layout_error(self.model.layout(int(m.get("n", 0)), self.params.slots))
        if err:
            raise StoreError(err)
        self.weights = store
        return store

    def max_query_cts(self) -> int:
        """Ciphertexts in the largest legitimate query (max_tokens, compressed or slot-packed)."""
        p, n, w = self.params, self.max_tokens, self.model.width
        comp = len(chunk_counts(n * w, p.N))
        try:
            packed = len(self.model.pack(np.zeros((n, w)), self.model.layout(n, p.slots)))
        except ValueError:  # the longest input does not fit a slot-packed layout: bound by slots
            packed = -(-2 * n * w // p.slots)
        return max(comp, packed)

    def key_bound(self, n: int) -> int:
        """Bytes in memory of one client's keys for inputs of n tokens (public key, relinearization,
        encapsulation and every Galois key at its level; at N >= 2^15 b only): the per-client bound."""
        p, seeds_only = self.params, self.params.N >= 2**15

        def sk(level):
            rows = len(key_rows(p, level))
            return key_digits(p, level) * rows * p.N * 8 * (1 if seeds_only else 2)

        total = 2 * (p.L + 1) * p.N * 8 + sk(p.L) + (2 * sk(p.L) if self.rc.encapsulation_h else 0)
        return total + sum(sk(lv) for lv in self.needed_levels(n, True).values())

    def session(self) -> "ServerSession":
        return ServerSession(self)

    def count_frame(self, kind: str, frame: bytes) -> None:
        with self.lock:
            self.received += 1
            if self.record_dir:
                with open(os.path.join(self.record_dir, f"{self.received:05d}_{kind}.bin"), "wb") as f:
                    f.write(frame)

    def needed_levels(self, n: int, compress: bool, argmax: bool = True) -> dict[int, int]:
        """Galois element -> the highest level it is applied at, so that each key covers only
        Q_level P: the model's rotations run at or below the bootstrapping output level (a BERT model
        names its own, each at its level, from a dry run of its forward: NexusBert.key_levels),
        decompression at the compressed level, bootstrapping at its own (galois_levels)."""
        p = self.params
        model = None
        if hasattr(self.model, "key_levels"):  # BERT: exactly the forward's keys, from its dry run
            try:
                model = self.model.key_levels(n, p, self.output_level, argmax)
            except ValueError:  # no bootstrap plan fits these parameters (a query fails at its plan): the step list
                model = None
        if model is None:
            model = {galois_element(p, r) for r in self.model.rotation_steps(n, p.slots, argmax=argmax) if r % p.slots}
        subs = set(subs_elements(p.N, max(chunk_counts(n * self.model.width, p.N)))) if compress else set()
        return key_levels(self.boot_levels, model, subs, self.output_level, self.compressed_level)

    def input_bound(self) -> int:
        """B: a public power of two with |x| <= B for every embedded input (from the model, never the data)."""
        b = float(self.model.input_bound())
        return 1 << max(0, int(np.ceil(np.log2(b))))


def fitting_tokens(model, slots: int) -> int:
    """The longest input the server accepts: the model's max_tokens, halved until its slot
    layout fits the parameters (the layouts pad n to a power of two)."""
    n = int(model.max_tokens)
    while n > 1:
        try:
            model.layout(n, slots)
            model.rotation_steps(n, slots)
            return n
        except ValueError:
            n = 1 << ((n - 1).bit_length() - 1)
    return 1


class ServerSession:
    """One connection: a state machine from frames to reply frames (None: no reply).

    Authentication (ours, wire.client_id_of / session_key / seal): the HELLO carries the
    client's secret (over TLS on TCP); its hash is the session's client id, whatever the header
    claims; the SETUP carries a fresh nonce, and every later frame must be sealed under
    session_key(secret, nonce) with the next sequence number. A frame that fails closes the
    session (`closed`)."""

    def __init__(self, server: Server):
        self.s = server
        self.hello: dict | None = None  # this connection's HELLO: n, compress, mask, output, Galois elements and levels
        self.client_id: str | None = None
        self.mac_key: bytes | None = None
        self.seq = 0
        self.closed = False

    def handle(self, frame: bytes) -> bytes | None:
        s = self.s
        try:
            if self.closed:
                raise AuthenticationError("this session was closed after an authentication failure")
            if self.mac_key is not None:
                try:
                    frame = unseal(frame, self.mac_key, self.seq)
                except AuthenticationError:
                    self.closed = True
                    raise
                self.seq += 1
            kind, header, blobs = decode_message(frame, max_header=s.header_limit)
            s.count_frame(kind, frame)
            if kind not in CLIENT_KINDS:
                raise ProtocolError(f"a client does not send {kind} messages")
            return getattr(self, "_" + kind)(header, blobs)
        except (ProtocolError, CKKSError, PlacementError) as e:  # the client's fault: an error message back
            s.log(f"refused: {type(e).__name__}: {e}")
            return encode_message("error", {"error": f"{type(e).__name__}: {e}"})
        except Exception as e:  # noqa: BLE001 -- a bug of ours: reported to the client too, with its type
            s.log(f"error: {type(e).__name__}: {e}")
            return encode_message("error", {"error": f"server error {type(e).__name__}: {e}"})

    def _keys(self, header) -> tuple[str, ClientKeys]:
        """(client id, its keys): the session's authenticated id; a header naming another id is refused."""
        cid = header.get("client_id")
        if self.s.insecure_no_auth:  # INSECURE weakened configuration: whatever id the frame claims
            if not isinstance(cid, str) or not cid:
                raise ProtocolError("message without a client id")
            return cid, self.s.clients.get(cid)
        if self.client_id is None:
            raise ProtocolError("a key or query before the HELLO")
        if cid is not None and cid != self.client_id:
            self.closed = True
            raise AuthenticationError(f"refused: this session is authenticated as client {self.client_id}, "
                                      f"the frame claims client {cid!r} (keys and queries are bound to their client)")
        return self.client_id, self.s.clients.get(self.client_id)

    def _authenticate(self, header) -> dict:
        """The HELLO's secret -> the session's client id and MAC key; extra SETUP fields (nonce)."""
        if self.s.insecure_no_auth:
            return {}
        secret = header.get("client_secret")
        try:
            raw = bytes.fromhex(secret) if isinstance(secret, str) else b""
        except ValueError:
            raw = b""
        if self.client_id is not None:  # a later HELLO of the same (sealed) session
            if secret is not None and client_id_of(raw) != self.client_id:
                raise AuthenticationError("a HELLO with another client's secret inside an authenticated session")
            return {}
        if len(raw) != SECRET_BYTES:
            raise AuthenticationError(f"a HELLO must carry the client's {SECRET_BYTES}-byte secret (hex): refused")
        cid = client_id_of(raw)
        if header.get("client_id") not in (None, cid):
            raise AuthenticationError("the HELLO's client id is not the hash of its secret: refused")
        nonce = os.urandom(16)
        self.client_id, self.mac_key = cid, session_key(raw, nonce)
        return {"nonce": nonce.hex(), "client_id": cid}

    def _hello(self, header, blobs):
        s, p = self.s, self.s.params
        if header.get("model") != s.model_name or header.get("params") != s.params_name:
            raise ProtocolError(f"this server runs model {s.model_name!r} with parameters {s.params_name!r}, "
                                f"the client asked for {header.get('model')!r} with {header.get('params')!r}")
        n, mask, compress = header.get("n"), header.get("mask"), header.get("compress", True)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= s.max_tokens:
            raise ProtocolError(f"n must be an integer token count in [1, {s.max_tokens}] for this model, got {n!r}")
        if not isinstance(mask, list) or len(mask) != n or any(v not in (0, 1) or isinstance(v, bool) for v in mask):
            raise ProtocolError(f"mask must be a list of n = {n} zeros and ones")
        if not isinstance(compress, bool):
            raise ProtocolError(f"compress must be true or false, got {compress!r}")
        output = header.get("output", "argmax")
        if output not in ("argmax", "logits"):
            raise ProtocolError(f"output must be 'argmax' or 'logits', got {output!r}")
        if output == "logits" and not s.reveal_logits:
            raise ProtocolError("this server returns the Argmax selection vector only; logits reveal the model's "
                                "full output and need a server started with --reveal-logits")
        extra = self._authenticate(header)
        _, keys = self._keys(header)
        need = s.needed_levels(n, compress, argmax=output == "argmax")
        self.hello = dict(n=n, compress=compress, mask=[int(v) for v in mask], elements=need, output=output)
        missing = [k for k, ok in (("public", keys.public), ("relin", keys.relin),
                                   ("encapsulation", keys.enc_up or not s.rc.encapsulation_h)) if not ok]
        width = s.model.width
        plan = s.model.plan(n, (p, s.rc), argmax=output == "argmax") if hasattr(s.model, "plan") else None
        if plan is not None:
            s.log(f"plan for n = {n}:\n" + s.model.plan_table(plan))
        return encode_message("setup", {
            "galois_elements": list(need), "galois_levels": [[g, lv] for g, lv in need.items()],
            "missing_galois": [g for g, lv in need.items() if g not in keys.galois or keys.galois[g].level < lv],
            "missing": missing, "input_level": s.output_level, "compressed_level": s.compressed_level,
            "chunks": chunk_counts(n * width, p.N), "width": width, "slots": p.slots,
            "encapsulation_h": s.rc.encapsulation_h, "security": p.security_note,
            "plan": plan, "output": output, **extra,
        })

    def _key(self, header, blobs):
        (cid, keys), p = self._keys(header), self.s.params
        role = header.get("role")
        if len(blobs) != 1:
            raise ProtocolError(f"a key message carries one blob, got {len(blobs)}")
        kind = blob_kind(blobs[0])
        want = "public_key" if role == "public" else "switching_key"
        if kind not in SERVER_KINDS or kind != want:
            raise ProtocolError(f"refused a {kind} blob for role {role!r}: the server takes only public key material")
        if role == "public":
            k = ser.deserialize_public_key(blobs[0], p)
            same_secret(keys, k, role)
            self.s.clients.charge(cid, keys, "public", held_nbytes(k))
            keys.public = k
            keys.key_bytes += len(blobs[0])
            return None
        if role not in ("relin", "galois", "enc_down", "enc_up"):
            raise ProtocolError(f"unknown key role {role!r}")
        g = header.get("element")
        if role == "galois" and (not isinstance(g, int) or isinstance(g, bool) or g % 2 == 0 or not 0 < g < 2 * p.N):
            raise ProtocolError(f"invalid Galois element {g!r}")
        k = ser.deserialize_switching_key(blobs[0], p)
        if role != "enc_down":  # the one key that switches to another secret (the sparse s' of encapsulation)
            same_secret(keys, k, role)
        if p.N >= 2**15:  # keep b and the seeds only (the PRG re-expands a at each use)
            k = SwitchingKey(k.b, k.a_seeds, p, expand=False, level=k.level, key_id=k.key_id)
        self.s.clients.charge(cid, keys, f"galois:{g}" if role == "galois" else role, held_nbytes(k))
        keys.key_bytes += len(blobs[0])
        if role == "galois":
            keys.galois[g] = k
        else:
            setattr(keys, role, k)
        keys.evaluator = keys.bootstrapper = None  # rebuilt with the new key
        return None

    def _keys_done(self, header, blobs):
        return None

    def _query(self, header, blobs):
        s, p = self.s, self.s.params
        if self.hello is None:
            raise ProtocolError("query before hello")
        (_, keys), h = self._keys(header), self.hello
        for b in blobs:
            if blob_kind(b) != "ciphertext":
                raise ProtocolError(f"a query carries ciphertexts only, got a {blob_kind(b)}")
        absent = [g for g, lv in h["elements"].items() if g not in keys.galois or keys.galois[g].level < lv]
        if keys.relin is None or absent or (s.rc.encapsulation_h and keys.enc_up is None):
            raise ProtocolError(f"keys missing for this query (relinearization or Galois elements {absent[:5]})")
        if keys.evaluator is None:
            keys.evaluator = Evaluator(p, EvaluationKeys(relin=keys.relin, galois=keys.galois))
            enc = (keys.enc_down, keys.enc_up) if s.rc.encapsulation_h else None
            keys.bootstrapper = Bootstrapper(keys.evaluator, s.rc, encapsulation=enc, progress=s.progress)
        with s.compute:  # one forward at a time; the other sessions keep receiving
            return self._evaluate(keys, h, blobs)

    def _evaluate(self, keys, h, blobs):
        s, p = self.s, self.s.params
        ev = keys.evaluator
        cts = [ser.deserialize_ciphertext(b, p) for b in blobs]
        for c in cts:
            same_secret(keys, c, "query ciphertext")
        n, layout = h["n"], s.model.layout(h["n"], p.slots)
        t0 = time.perf_counter()
        boot_in = CountingBootstrapper(keys.bootstrapper)
        if h["compress"]:
            cts = self.expand_query(ev, cts, layout, n, boot_in)
        elif any(c.level != s.output_level for c in cts):
            raise ProtocolError(f"query ciphertexts must be at level {s.output_level}")
        t1 = time.perf_counter()
        bts, trace = CountingBootstrapper(keys.bootstrapper), []
        store = s.weights if s.weights is not None and s.weights.layout_error(layout) is None else None
        hits = store.hits if store is not None else 0
        hooks = {"progress": s.progress} if s.progress is not None else {}  # a model without the hook still serves
        if store is not None:  # a store for another token count: encode as without
            hooks["weights"] = store
        out = s.model.forward(ev, bts, cts, n, h["mask"], trace=trace, argmax=h["output"] == "argmax", **hooks)
        t2 = time.perf_counter()
        computed = sum(ciphertext_nbytes(p, c.level, c.size) for c in out)
        out_blobs = [ser.serialize_ciphertext(ev.drop_level(c, 0)) for c in out]  # level 0: least bytes
        stored = store.hits - hits if store is not None else 0
        s.log(f"query n = {n}: expand {t1 - t0:.2f} s, forward {t2 - t1:.2f} s, {bts.calls} bootstraps"
              + (f", {stored} plaintexts from the weight store" if store is not None else
                 ", weight store not used (made for another token count)" if s.weights is not None else ""))
        return encode_message("result", {
            "expand_s": t1 - t0, "forward_s": t2 - t1, "bootstraps": bts.calls, "trace": trace,
            "input_bootstraps": boot_in.calls, "expand_mode": s.expand if h["compress"] else None,
            "levels_out": [c.level for c in out], "result_bytes_at_computed_level": computed,
            "key_bytes_held": keys.key_bytes, "output": h["output"], "stored_plaintexts": stored,
        }, out_blobs)

    def expand_query(self, ev, cts, layout, n, bts=None) -> list[Ciphertext]:
        """A compressed query -> the model's slot layout at the forward's input level
        (refimpl.nexus.compression.expand_input: NEXUS Alg. 5, then one masked product per value);
        with expand="bootstrap" (refimpl's) the masks carry 1/B and each sum is bootstrapped by
        bts, then multiplied by the integer B. ProtocolError on a query of the wrong shape."""
        s, p = self.s, self.s.params
        width = s.model.width
        chunks = chunk_counts(n * width, p.N)
        lvl = s.compressed_level
        if len(cts) != len(chunks) or any(c.level != lvl for c in cts):
            raise ProtocolError(f"a compressed query has {len(chunks)} ciphertexts at level {lvl}")
        boot = s.expand == "bootstrap"
        try:
            where = placement(lambda x: s.model.pack(x, layout), n, width, p.slots)
            K = len(s.model.pack(np.zeros((n, width)), layout))
            return expand_input(ev, cts, chunks, where, K, bound=s.input_bound() if boot else 1,
                                bootstrapper=bts if boot else None)
        except PlacementError as e:
            raise ProtocolError(str(e)) from None
