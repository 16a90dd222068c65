"""Bootstrap-precision probe: the encrypted forward with an oracle bootstrapper that adds Gaussian
noise of std 2^-b to every refreshed slot (b = 20 models the 128-bit N = 2^16 set's 20.1 mean
bits, 26 the toy ring's), at every refresh or at chosen ones, against the float64 model.

    refimpl experiment noise-probe MODEL "SENTENCE" 20 20:3,4 26 ... --glue-dir DIR

Each SPEC is BITS[:i,j,...] (noise only at the i-th, j-th refresh, counted from 0). Runs at the
insecure deep-2^12-19 set (diagnosis, not a measurement of security); calibrates on SST-2 train
(--glue-dir). Prints one JSON line per SPEC: logits, max error, per-layer hidden-state errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from ..ckks.keys import galois_element
from ..nexus import protocol as P
from ..nexus.bert.forward import encrypted_forward
from ..nexus.bert.layout import client_embed, input_layout, pack_input, rotation_steps, unpack, unpack_output
from ..nexus.bert.reference import plaintext_reference
from ..ring.sampling import RandomSource


class NoisyOracle:
    """A test-only bootstrapper (decrypt, add noise, re-encrypt; it holds the secret key) with the
    interface of refimpl.ckks.bootstrap.OracleBootstrapper, plus N(0, 2^-2b) on the real and imaginary
    part of every slot (only: the refreshes, counted from 0, that get the noise; None: all)."""

    def __init__(self, sk, output_level: int, bits: float, only=None, seed: int = 0):
        self.params = sk.params
        self.output_level, self.output_scale, self.input_level = output_level, sk.params.scale, 0
        self.enc, self.dec = Encoder(sk.params), Decryptor(sk)
        self.encr = Encryptor(sk, RandomSource.insecure_seeded(seed + 5))
        self.bits, self.only, self.rng = bits, only, np.random.default_rng(seed)
        self.calls = 0

    def bootstrap(self, ct):
        self.calls += 1
        z = self.enc.decode(self.dec.decrypt(ct))
        if self.only is None or self.calls - 1 in self.only:
            s = 2.0 ** -self.bits
            z = z + self.rng.normal(0, s, z.shape) + 1j * self.rng.normal(0, s, z.shape)
        return self.encr.encrypt(self.enc.encode(z, level=self.output_level, scale=self.output_scale))


def command(a) -> int:
    """`refimpl experiment noise-probe` (options: refimpl.cli.experiments): one JSON line per spec."""
    srv = P.Server(a.model, "deep-2^12-19")
    with open(Path(a.glue_dir) / "SST-2" / "train.tsv") as f:
        srv.model.calibrate([ln.split("\t")[0] for ln in f.read().splitlines()[1:]])
    model, p, rc = srv.model.model, srv.params, srv.rc
    out_level = p.L - rc.depth
    ids, mask = srv.model.encode(a.sentence)
    n = len(ids)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    levels = {galois_element(p, r): out_level for r in rotation_steps(model.config, n, p.slots) if r % p.slots}
    ev = Evaluator(p, kg.evaluation_keys(sk, elements=list(levels), levels=levels))
    enc, E, D = Encoder(p), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(2)), Decryptor(sk)
    lay = input_layout(model.config, n, p.slots)
    ap_ = plaintext_reference(model, ids, mask, approximate=True)
    x = client_embed(model.config, model.params, ids, mask)
    rows = []
    for spec in a.specs:
        bits, _, only = spec.partition(":")
        only = {int(k) for k in only.split(",")} if only else None
        bts = NoisyOracle(sk, out_level, float(bits), only)
        cts = [E.encrypt(enc.encode(v, level=out_level)) for v in pack_input(x, lay)]
        taps: dict = {}
        (z,) = encrypted_forward(ev, bts, model, cts, n, mask, taps=taps)
        logits = unpack_output([enc.decode(D.decrypt(z)).real], lay, model.config.num_labels)
        layer_err = [float(np.max(np.abs(unpack([enc.decode(D.decrypt(c)).real for c in taps[f"L{i}"]], lay, lay.d)
                                         - ap_["hidden"][i + 1]))) for i in range(model.config.num_hidden_layers)]
        rows.append({"noise_bits": float(bits), "only": sorted(only) if only else None, "refreshes": bts.calls,
                     "logits": np.round(logits, 4).tolist(), "model": np.round(ap_["logits"], 4).tolist(),
                     "max_err": float(np.max(np.abs(logits - ap_["logits"]))), "layer_err": layer_err})
        print(json.dumps(rows[-1]), flush=True)
    if getattr(a, "json", None):
        Path(a.json).write_text(json.dumps({"model": a.model, "sentence": a.sentence, "rows": rows}, indent=1) + "\n")
    return 0

