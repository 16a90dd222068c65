"""The first layer two ways, counted: today's input expansion + BSGS projections, against the paper's
path (NEXUS Alg. 5 decompression feeding the broadcast ct-pt product of §3.1.1, its plaintexts
precomputed as in Alg. 6).

Both start from the client's compressed input (n d values in the coefficients of ceil(n d / N)
ciphertexts, NEXUS Alg. 5) and end with Q, K, V in refimpl's token-major chunks (the layout every
later block reads):

  today   refimpl.nexus.compression.expand_input: each leaf bcast(x[t, j]) times its one-hot slot
          mask into the input chunks (n d plaintext products), then Forward.linear for Q, K and V
          (Halevi-Shoup diagonals with baby-step giant-step: rotations, P products per P x P block);
  paper   each leaf times, for every output chunk of Q, K and V, the plaintext holding column j of
          that chunk's rows of W on token t's window (NEXUS §3.1.1: sum_j A[:, j] bcast(B[j, i]);
          the plaintext operand fixes the output layout): no rotation, 3 (d / P) n d products, and
          as many distinct plaintexts (they depend on t: Alg. 6's precompute must hold them all).

`counts_small` runs both on a real small ring through refimpl.nexus.counting.CountingEvaluator and
checks they decrypt to the same Q, K, V (and to numpy); `counts_bertbase` counts both at BERT-base
size (n = 128, d = 768, N = 2^16) on a level-only evaluator (no arithmetic; the same code paths);
the mask products of the expansion, whose plaintexts would not fit in memory at that size, are
counted as n d (one placement per value, as measured on the small ring).
"""

from __future__ import annotations

import numpy as np

from ..bert.config import BertConfig
from ..bert.model import init_params
from ..ckks import Ciphertext, Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Plaintext
from ..ckks.bootstrap.bootstrapper import bootstrap_parameters, bootstrap_preset
from ..nexus import bert as nb
from ..nexus.compression import compress_many, decompress, expand_input, placement
from ..nexus.counting import CountingEvaluator
from ..nexus.levels import with_scale
from ..nexus.matmul import chunk_counts
from ..nexus.bert.weights_store import LevelEvaluator
from ..ring.sampling import RandomSource

PROJ = ("query", "key", "value")
KEY_SWITCHING = ("rotations", "subs", "ct_mults", "conjugations")


def paper_qkv(ev, cts, chunks, lay, weights, encode) -> dict:
    """Q, K, V chunks from the compressed input by the broadcast ct-pt product (see the module docstring).

    weights: {proj: (W [d, d], b [d])}; encode(values, level, scale) -> Plaintext. Returns {(proj, c): ct}."""
    p = ev.params
    d, P, w = lay.d, lay.chunk, lay.window
    acc: dict = {}
    for k, (ct, size) in enumerate(zip(cts, chunks)):
        lvl = ct.level

        def consume(j, leaf, base=k * p.N, lvl=lvl):
            if base + j >= lay.n * d:
                return
            t, f = divmod(base + j, d)
            scale = p.scale * float(p.q[lvl]) / leaf.scale  # after the rescale: exactly Delta
            for proj in PROJ:
                W = weights[proj][0]
                for c in range(lay.chunks(d)):
                    def values(c=c, W=W):
                        v = np.zeros(lay.slots)
                        col = W[c * P:(c + 1) * P, f]
                        v[t * w: t * w + col.size] = col
                        return v
                    term = ev.mul_plain(leaf, encode(values, lvl, scale))
                    term = Ciphertext(term.c, lvl, p.scale * float(p.q[lvl]), p)
                    acc[(proj, c)] = term if (proj, c) not in acc else ev.add(acc[(proj, c)], term)
        decompress(ev, ct, consume, size)
    vec = nb.SlotVectors(lay, np.ones(lay.n))
    return {key: ev.add_const(with_scale(ev.rescale(a), p.scale), vec.features(d, key[1], weights[key[0]][1]))
            for key, a in acc.items()}


def _model(hidden: int, heads: int, seed: int = 1):
    cfg = BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=heads,
                     intermediate_size=2 * hidden, max_position_embeddings=16, attention="2quad-freediv",
                     activation="quad")
    params = init_params(cfg, np.random.default_rng(seed), dtype=np.float64)
    return nb.NexusModel(cfg, params)


def _forward(ev, model, lay):
    """A Forward for its `linear` kernel alone (no plan: linear follows its input's level)."""
    return nb.Forward(ev, None, model, lay, np.ones(lay.n), [], [], None)


def ks(c) -> int:
    return sum(c.get(k, 0) for k in KEY_SWITCHING)


def counts_small(logN: int = 11, hidden: int = 128, heads: int = 8, n: int = 6) -> dict:
    """Both paths on a real N = 2^logN ring (insecure), counted; Q, K, V compared after decryption."""
    p, _ = bootstrap_parameters(2**logN, levels_after=6, encapsulation_h=32, num_p=3, insecure=True)
    model = _model(hidden, heads)
    lay = nb.input_layout(model.config, n, p.slots)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    size = n * lay.d
    elts = sorted({p.N // (1 << i) + 1 for i in range(max(chunk_counts(size, p.N)).bit_length() - 1)})
    ev0 = Evaluator(p, kg.evaluation_keys(sk, rotations=nb.rotation_steps(model.config, n, p.slots), elements=elts))
    enc, D = Encoder(p), Decryptor(sk)
    x = np.random.default_rng(2).normal(0, 1, (n, lay.d))
    level = 4
    cts = compress_many(enc, Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(3)), x.ravel(), level=level,
                        scale=p.scale * p.N / chunk_counts(size, p.N)[-1])
    chunks = chunk_counts(size, p.N)
    w0 = model.layer(0)
    weights = {pr: (w0[f"attention.self.{pr}.weight"], w0[f"attention.self.{pr}.bias"]) for pr in PROJ}
    ref = {pr: x @ W.T + b for pr, (W, b) in weights.items()}
    out = {}
    # today
    ev = CountingEvaluator(ev0)
    where = placement(lambda v: nb.pack_input(v, lay), n, lay.d, p.slots)
    xs = expand_input(ev, cts, chunks, where, lay.chunks(lay.d))
    expand = dict(ev.counts)
    fw = _forward(ev, model, lay)
    got = {pr: fw.linear(xs, W, b) for pr, (W, b) in weights.items()}
    err_a = max(np.max(np.abs(nb.unpack([enc.decode(D.decrypt(c)).real for c in got[pr]], lay, lay.d) - ref[pr]))
                for pr in PROJ)
    out["today"] = {"expand": expand, "total": dict(ev.counts), "key_switches": ks(ev.counts), "max_err": float(err_a)}
    # paper
    ev = CountingEvaluator(ev0)
    encodes = [0]

    def encode(values, lvl, scale):
        encodes[0] += 1
        return enc.encode(values(), level=lvl, scale=scale)

    res = paper_qkv(ev, cts, chunks, lay, weights, encode)
    err_b = max(np.max(np.abs(nb.unpack([enc.decode(D.decrypt(res[(pr, c)])).real for c in range(lay.chunks(lay.d))],
                                        lay, lay.d) - ref[pr])) for pr in PROJ)
    out["paper"] = {"total": dict(ev.counts), "key_switches": ks(ev.counts), "plaintexts": encodes[0],
                    "max_err": float(err_b)}
    out["setting"] = {"N": p.N, "n": n, "d": lay.d, "P": lay.chunk, "compressed_cts": len(cts)}
    return out


class _Counting(nb.Forward):
    """Forward.linear on a level-only evaluator, counting the plaintexts it asks for."""

    plaintexts = 0

    def plaintext(self, key, level, scale, values):
        self.plaintexts += 1
        return Plaintext(None, level, scale, self.ev.params)


def counts_bertbase(n: int = 128, preset: str = "128-2^16-dense19") -> dict:
    """Both paths at BERT-base size counted on a level-only evaluator (no arithmetic)."""
    params, rc = bootstrap_preset(preset)
    top = params.L - rc.depth
    model = _model(768, 12)
    lay = nb.input_layout(model.config, n, params.slots, head_rows=True)
    size = n * lay.d
    chunks = chunk_counts(size, params.N)
    lev = LevelEvaluator(params)
    cts = [lev.shadow(top + 1, params.scale) for _ in chunks]  # the "direct" expansion: one level above the input
    # today: decompression (counted), masks (n d, see the docstring), then the projections
    ev = CountingEvaluator(lev)
    for ct, size_c in zip(cts, chunks):
        decompress(ev, ct, lambda j, leaf: None, size_c)
    expand = dict(ev.counts)
    expand["pt_mults"] = expand.get("pt_mults", 0) + size
    ev2 = CountingEvaluator(lev)
    fw = _Counting(ev2, None, model, lay, np.ones(n), [], [], None)
    w0 = model.layer(0)
    xs = [lev.shadow(top, params.scale) for _ in range(lay.chunks(lay.d))]
    for pr in PROJ:
        fw.linear(xs, w0[f"attention.self.{pr}.weight"], w0[f"attention.self.{pr}.bias"], pr)
    proj = dict(ev2.counts)
    total = {k: expand.get(k, 0) + proj.get(k, 0) for k in set(expand) | set(proj)}
    today = {"expand": expand, "projections": proj, "total": total, "key_switches": ks(total),
             "plaintexts_per_query": size + fw.plaintexts, "projection_plaintexts": fw.plaintexts}
    # paper
    ev = CountingEvaluator(lev)
    weights = {pr: (w0[f"attention.self.{pr}.weight"], w0[f"attention.self.{pr}.bias"]) for pr in PROJ}
    n_pt = [0]

    def encode(values, lvl, scale):
        n_pt[0] += 1
        return Plaintext(None, lvl, scale, params)

    paper_qkv(ev, cts, chunks, lay, weights, encode)
    bytes_pt = (top + 2) * params.N * 8
    paper = {"total": dict(ev.counts), "key_switches": ks(ev.counts), "plaintexts": n_pt[0],
             "plaintext_store_tib": round(n_pt[0] * bytes_pt / 2**40, 1)}
    return {"setting": {"N": params.N, "n": n, "d": lay.d, "P": lay.chunk, "compressed_cts": len(cts),
                        "level": top + 1, "bytes_per_plaintext": bytes_pt},
            "today": today, "paper": paper}
