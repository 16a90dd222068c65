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
`clients`); `ServerSession` holds one connection's state (its HELLO) and turns each frame into
a reply frame. `serve` accepts TCP connections one at a time and runs a session on each.

Reference: NEXUS §2 (system model), §3.1 and Alg. 5 (compression) (Zhang et al., NDSS 2025).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from refimpl.ckks import Ciphertext, EvaluationKeys, Evaluator
from refimpl.ckks import serialize as ser
from refimpl.ckks.bootstrap.bootstrapper import Bootstrapper
from refimpl.ckks.keys import SwitchingKey, galois_element
from refimpl.nexus.compression import PlacementError, expand_input, placement, subs_elements
from refimpl.nexus.counting import CountingBootstrapper
from refimpl.nexus.matmul import chunk_counts

from .models import load_model
from .transport import TcpTransport
from .wire import SERVER_KINDS, ProtocolError, blob_kind, ciphertext_nbytes, decode_message, encode_message, resolve_params


@dataclass
class ClientKeys:
    """What the server holds for one client: public key material only."""

    public: object = None
    relin: SwitchingKey | None = None
    galois: dict = field(default_factory=dict)
    enc_down: SwitchingKey | None = None
    enc_up: SwitchingKey | None = None
    key_bytes: int = 0
    evaluator: object = None
    bootstrapper: object = None


def key_levels(boot_levels: dict, model_elements, subs_elements_, out_level: int, compressed_level: int) -> dict[int, int]:
    """Galois element -> the level its key must cover: bootstrapping's own levels, the model's
    rotations at the bootstrapping output level, decompression at the compressed level (an
    element used by several gets the highest)."""
    levels = dict(boot_levels)
    for ks, lv in ((model_elements, out_level), (subs_elements_, compressed_level)):
        for k in ks:
            levels[k] = max(levels.get(k, -1), lv)
    return dict(sorted(levels.items()))


class Server:
    """The NEXUS server: one model, one bootstrapping parameter set, keys cached per client id."""

    def __init__(self, model: str = "toy", params: str = "toy-2^10-deep", record_dir: str | None = None,
                 log=None, expand: str = "bootstrap"):
        """expand: how compressed input reaches the forward's input level. "direct": the client
        encrypts one level above it and the server decompresses there (all levels: slow Subs,
        large query); "bootstrap": the client encrypts at level 1, the server decompresses on two
        limbs, places the values scaled by 1/B (B a public power of two bounding |x|), bootstraps
        each input ciphertext and multiplies by B (an integer: no level)."""
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
        self.clients: dict[str, ClientKeys] = {}
        self.record_dir = record_dir
        self.received = 0
        self.log = log or (lambda *a: None)
        if record_dir:
            os.makedirs(record_dir, exist_ok=True)

    def session(self) -> "ServerSession":
        return ServerSession(self)

    def needed_levels(self, n: int, compress: bool) -> dict[int, int]:
        """Galois element -> the highest level it is applied at, so that each key covers only
        Q_level P: the model's rotations run at or below the bootstrapping output level,
        decompression at the compressed level, bootstrapping at its own (galois_levels)."""
        p = self.params
        model = {galois_element(p, r) for r in self.model.rotation_steps(n, p.slots) if r % p.slots}
        subs = set(subs_elements(p.N, max(chunk_counts(n * self.model.width, p.N)))) if compress else set()
        return key_levels(self.boot_levels, model, subs, self.output_level, self.compressed_level)

    def needed_elements(self, n: int, compress: bool) -> list[int]:
        return list(self.needed_levels(n, compress))

    def input_bound(self) -> int:
        """B: a public power of two with |x| <= B for every embedded input (from the model, never the data)."""
        b = float(self.model.input_bound())
        return 1 << max(0, int(np.ceil(np.log2(b))))


class ServerSession:
    """One connection: a state machine from frames to reply frames (None: no reply)."""

    def __init__(self, server: Server):
        self.s = server
        self.hello: dict | None = None  # this connection's HELLO: n, compress, mask, Galois elements and levels

    def handle(self, frame: bytes) -> bytes | None:
        s = self.s
        s.received += 1
        try:
            kind, header, blobs = decode_message(frame)
            if s.record_dir:
                with open(os.path.join(s.record_dir, f"{s.received:05d}_{kind}.bin"), "wb") as f:
                    f.write(frame)
            return getattr(self, "_" + kind)(header, blobs)
        except Exception as e:  # every failure goes back to the client as an error message
            s.log(f"error: {type(e).__name__}: {e}")
            return encode_message("error", {"error": f"{type(e).__name__}: {e}"})

    def _keys(self, header) -> ClientKeys:
        cid = header.get("client_id")
        if not isinstance(cid, str) or not cid:
            raise ProtocolError("message without a client id")
        return self.s.clients.setdefault(cid, ClientKeys())

    def _hello(self, header, blobs):
        s, p = self.s, self.s.params
        if header.get("model") != s.model_name or header.get("params") != s.params_name:
            raise ProtocolError(f"this server runs model {s.model_name!r} with parameters {s.params_name!r}, "
                                f"the client asked for {header.get('model')!r} with {header.get('params')!r}")
        n, compress = int(header["n"]), bool(header.get("compress", True))
        keys = self._keys(header)
        need = s.needed_levels(n, compress)
        self.hello = dict(n=n, compress=compress, mask=[int(v) for v in header["mask"]], elements=need)
        missing = [k for k, ok in (("public", keys.public), ("relin", keys.relin),
                                   ("encapsulation", keys.enc_up or not s.rc.encapsulation_h)) if not ok]
        width = s.model.width
        plan = s.model.plan(n, (p, s.rc)) if hasattr(s.model, "plan") else None
        if plan is not None:
            s.log(f"plan for n = {n}:\n" + s.model.plan_table(plan))
        return encode_message("setup", {
            "galois_elements": list(need), "galois_levels": [[g, lv] for g, lv in need.items()],
            "missing_galois": [g for g, lv in need.items() if g not in keys.galois or keys.galois[g].level < lv],
            "missing": missing, "input_level": s.output_level, "compressed_level": s.compressed_level,
            "chunks": chunk_counts(n * width, p.N), "width": width, "slots": p.slots,
            "encapsulation_h": s.rc.encapsulation_h, "security": p.security_note,
            "plan": plan,
        })

    def _key(self, header, blobs):
        keys, p = self._keys(header), self.s.params
        role = header.get("role")
        if len(blobs) != 1:
            raise ProtocolError(f"a key message carries one blob, got {len(blobs)}")
        kind = blob_kind(blobs[0])
        want = "public_key" if role == "public" else "switching_key"
        if kind not in SERVER_KINDS or kind != want:
            raise ProtocolError(f"refused a {kind} blob for role {role!r}: the server takes only public key material")
        keys.key_bytes += len(blobs[0])
        if role == "public":
            keys.public = ser.deserialize_public_key(blobs[0], p)
            return None
        k = ser.deserialize_switching_key(blobs[0], p)
        if p.N >= 2**15:  # keep b and the seeds only (the PRG re-expands a at each use)
            k = SwitchingKey(k.b, k.a_seeds, p, expand=False, level=k.level)
        if role == "relin":
            keys.relin = k
        elif role == "galois":
            g = int(header["element"])
            if g % 2 == 0 or not 0 < g < 2 * p.N:
                raise ProtocolError(f"invalid Galois element {g}")
            keys.galois[g] = k
        elif role in ("enc_down", "enc_up"):
            setattr(keys, role, k)
        else:
            raise ProtocolError(f"unknown key role {role!r}")
        keys.evaluator = keys.bootstrapper = None  # rebuilt with the new key
        return None

    def _keys_done(self, header, blobs):
        return None

    def _query(self, header, blobs):
        s, p = self.s, self.s.params
        if self.hello is None:
            raise ProtocolError("query before hello")
        keys, h = self._keys(header), self.hello
        for b in blobs:
            if blob_kind(b) != "ciphertext":
                raise ProtocolError(f"a query carries ciphertexts only, got a {blob_kind(b)}")
        absent = [g for g, lv in h["elements"].items() if g not in keys.galois or keys.galois[g].level < lv]
        if keys.relin is None or absent or (s.rc.encapsulation_h and keys.enc_up is None):
            raise ProtocolError(f"keys missing for this query (relinearization or Galois elements {absent[:5]})")
        if keys.evaluator is None:
            keys.evaluator = Evaluator(p, EvaluationKeys(relin=keys.relin, galois=keys.galois))
            enc = (keys.enc_down, keys.enc_up) if s.rc.encapsulation_h else None
            keys.bootstrapper = Bootstrapper(keys.evaluator, s.rc, encapsulation=enc)
        ev = keys.evaluator
        cts = [ser.deserialize_ciphertext(b, p) for b in blobs]
        n, layout = h["n"], s.model.layout(h["n"], p.slots)
        t0 = time.perf_counter()
        boot_in = CountingBootstrapper(keys.bootstrapper)
        if h["compress"]:
            cts = self.expand_query(ev, cts, layout, n, boot_in)
        elif any(c.level != s.output_level for c in cts):
            raise ProtocolError(f"query ciphertexts must be at level {s.output_level}")
        t1 = time.perf_counter()
        bts, trace = CountingBootstrapper(keys.bootstrapper), []
        out = s.model.forward(ev, bts, cts, n, h["mask"], trace=trace)
        t2 = time.perf_counter()
        computed = sum(ciphertext_nbytes(p, c.level, c.size) for c in out)
        out_blobs = [ser.serialize_ciphertext(ev.drop_level(c, 0)) for c in out]  # level 0: least bytes
        s.log(f"query n = {n}: expand {t1 - t0:.2f} s, forward {t2 - t1:.2f} s, {bts.calls} bootstraps")
        return encode_message("result", {
            "expand_s": t1 - t0, "forward_s": t2 - t1, "bootstraps": bts.calls, "trace": trace,
            "input_bootstraps": boot_in.calls, "expand_mode": s.expand if h["compress"] else None,
            "levels_out": [c.level for c in out], "result_bytes_at_computed_level": computed,
            "key_bytes_held": keys.key_bytes,
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


def serve(server: Server, host: str, port: int, max_connections: int = 0, out=sys.stdout) -> None:
    """Accept connections one at a time (the evaluation uses every core) until max_connections
    (0: never stop), each running its own ServerSession; a broken connection is reported on
    `out` and dropped."""
    with socket.create_server((host, port)) as lsock:
        print(f"listening on {host}:{lsock.getsockname()[1]}", file=out, flush=True)
        served = 0
        while not max_connections or served < max_connections:
            conn, _ = lsock.accept()
            t = TcpTransport(conn)
            session = server.session()
            try:
                while (frame := t.recv()) is not None:
                    reply = session.handle(frame)
                    if reply is not None:
                        t.send(reply)
            except (ProtocolError, OSError) as e:
                print(f"connection dropped: {e}", file=out, flush=True)
            finally:
                t.close()
            served += 1
