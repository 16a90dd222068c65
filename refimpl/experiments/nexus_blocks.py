"""Benchmark rows of the NEXUS blocks: `refimpl bench nexus` (refimpl.bench.nexus) and `refimpl experiment nexus-blocks`.

Two kinds of rows:
  like-for-like  the official code's sizes, parameters and simplified variants (GELU 3-piece
                 on 32768 values, LayerNorm 16 x 768 without mean/gamma/beta, Softmax
                 128 x 128 without QuickMax at N = 2^16, primes 58, 40 x 18, 58; MatMul
                 4096 x 768 times compressed 768 x 64 at N = 2^13, primes 60, 40, 60), beside
                 the official C++ code measured on this machine (one thread, plain SEAL /
                 with HEXL; the figures in PEER below);
  full           the paper's blocks (4-piece GELU, LayerNorm with mean/gamma/beta, Softmax
                 with QuickMax) at the same N; refreshes by the bootstrapper given (the
                 OracleBootstrapper until real bootstrapping lands: its time is excluded and
                 the row says so).
Each row: op seconds, peak RSS, levels consumed, bootstraps, max and mean error against
numpy (exact function) and against the float64 model of the same approximation, op counts.
`quick=True` runs the same rows at N = 2^12 with smaller shapes (the CI smoke test).

Usage: `refimpl experiment nexus-blocks [--quick] [--rows argmax_boot,...]`, or
`from refimpl.experiments.nexus_blocks import run; run(quick=True, emit=print)`.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..bert.functional import gelu_erf, layer_norm
from ..ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters, preset
from ..ckks.bootstrap import OracleBootstrapper
from ..ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_preset
from ..measure import peak_rss_mib
from ..nexus.argmax import argmax, argmax_plain
from ..nexus.counting import CountingEvaluator
from ..nexus.gelu import gelu, gelu_plain
from ..nexus.layernorm import layernorm, layernorm_plain
from ..nexus.matmul import (
    compress_matrix, layout_interleaved, layout_row_major, layout_row_replicated, matmul_compressed, qk_scores,
    qk_scores_pairwise, subs_elements_for,
)
from ..nexus.official import (
    gelu3, gelu3_plain, layernorm_official, layernorm_official_plain, softmax_official, softmax_official_plain,
)
from ..nexus.softmax import softmax, softmax_plain
from ..ring.sampling import RandomSource

PEER = {  # official NEXUS C++ on this machine, one thread: plain SEAL s, SEAL+HEXL s, its error metric
    "gelu": (13.6, 6.8, "MAE 1.2e-3"),
    "layernorm": (9.4, 4.7, "MAE 1.3e-5"),
    "softmax": (5.5, 2.7, "MAE 8.7e-5"),
    "matmul": (245.6, 104.4, "mean error 5.3e-4"),
    "argmax": (144.7, None, "3 bootstraps of about 40 s"),
}


class _Setup:
    def __init__(self, params: Parameters, rotations=(), elements=(), seed=1):
        t = time.perf_counter()
        kg = KeyGenerator(params, RandomSource.insecure_seeded(seed))
        self.sk = kg.secret_key()
        self.enc = Encoder(params)
        self.E = Encryptor(kg.public_key(self.sk), RandomSource.insecure_seeded(seed + 1))
        self.D = Decryptor(self.sk)
        self.ev = Evaluator(params, kg.evaluation_keys(self.sk, rotations=rotations, elements=elements))
        self.keygen_s = time.perf_counter() - t
        self.p = params

    def decrypt(self, ct) -> np.ndarray:
        return self.enc.decode(self.D.decrypt(ct)).real


class _TimedOracle:
    """The OracleBootstrapper with its calls counted and timed (its time is excluded from the row)."""

    def __init__(self, sk):
        self._bts = OracleBootstrapper(sk)
        self.calls, self.seconds = 0, 0.0

    def bootstrap(self, ct):
        t = time.perf_counter()
        out = self._bts.bootstrap(ct)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


def _argmax_input(slots: int, argmax_plain):
    """8 values per 16-slot window (the official Argmax row): x, one-hot, float64 model, kept slots.

    x[3] = 0.5 and x[7] = 0.499999 tie within the Sgn resolution, as in the official test."""
    v = np.linspace(-0.5, 0.499999, 8)
    v[3] = 0.5
    x = np.tile(np.concatenate([v, np.zeros(8)]), slots // 16)
    exact = np.tile(np.concatenate([(v == v.max()).astype(float), np.zeros(8)]), slots // 16)
    return x, exact, argmax_plain(x, 8, window=16), np.arange(slots) % 16 < 8


def _boot_setup(quick: bool, rotations) -> tuple["_Setup", object]:
    """Keys and a real Bootstrapper: 128-bit N = 2^16 with 18 levels after bootstrapping (dense
    secret, h = 32 encapsulation), or a deep toy ring when quick. Keys keep the seeds of a."""
    bp, rc = bootstrap_preset("toy-2^10-deep" if quick else "128-2^16-dense")
    t = time.perf_counter()
    kg = KeyGenerator(bp, RandomSource.insecure_seeded(3), expand_keys=quick)
    sk = kg.secret_key()
    needed = Bootstrapper(Evaluator(bp), rc).galois_elements()
    ev = Evaluator(bp, kg.evaluation_keys(sk, rotations=rotations, elements=needed))
    real = Bootstrapper(ev, rc, encapsulation=kg.encapsulation_keys(sk, kg.secret_key(hamming_weight=rc.encapsulation_h)))
    s = _Setup.__new__(_Setup)
    s.sk, s.p, s.ev, s.enc = sk, bp, ev, Encoder(bp)
    s.E, s.D = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4)), Decryptor(sk)
    s.keygen_s = time.perf_counter() - t
    return s, real


def _row(name, kind, setup, fn, ct, exact, model, extra=None, peer=None, quick=False, bts=None):
    ev = CountingEvaluator(setup.ev)
    t = time.perf_counter()
    out = fn(ev, ct)
    dt = time.perf_counter() - t - (bts.seconds if bts else 0.0)
    z = setup.decrypt(out[0] if isinstance(out, list) else out)
    rec = {
        "name": f"nexus.{kind}.{name}", "N": setup.p.N, "levels_chain": setup.p.L, "dnum": setup.p.dnum,
        "special_primes": len(setup.p.p),
        "log_qp": round(setup.p.log_qp, 1), "median_s": round(dt, 3), "keygen_s": round(setup.keygen_s, 2),
        "peak_rss_gib": round(peak_rss_mib() / 1024, 2),
        "levels_consumed": (ct.level - (out[0] if isinstance(out, list) else out).level),
        "max_err_exact": float(np.max(np.abs(z - exact))), "mean_err_exact": float(np.mean(np.abs(z - exact))),
        "max_err_model": float(np.max(np.abs(z - model))),
        "counts": {k: int(v) for k, v in ev.counts.items() if k in ("rotations", "subs", "ct_mults", "pt_mults", "rescales")},
    }
    if bts:
        rec.update(bootstraps=bts.calls, bootstrapper="OracleBootstrapper (decrypt/re-encrypt, time excluded)")
    if peer:
        rec.update(peer="NEXUS official C++ (SEAL, 1 thread)", peer_median_s=peer[0], peer_hexl_s=peer[1],
                   peer_error=peer[2], ratio=None if (quick or bts) else round(dt / peer[0], 2))
    rec.update(extra or {})
    return rec


ALL_ROWS = ("gelu", "layernorm", "softmax", "matmul", "argmax", "qk", "argmax_boot", "softmax_boot")


def run(quick: bool = False, emit: Callable[[dict], None] = print, rows=ALL_ROWS,
        dnum: int | None = 4) -> list[dict]:
    """Run the benchmark rows; each record is passed to `emit` as soon as it is measured.

    dnum: key-switching digits at N = 2^16 (the chain Q is the official one either way). The
    official code (SEAL) has one special prime, i.e. dnum = 19: (L+1)^2 NTTs per key switch
    and 19-digit keys (0.4 GB each at N = 2^16). dnum = 4 with 4 special primes keeps
    128-bit security (log PQ ~ 1070 < 1761) and needs about 4x fewer NTTs and 4x less key
    memory; dnum=None reproduces SEAL's layout."""
    out = []

    def put(rec):
        if quick:
            rec["quick"] = "smaller N and shapes than the peer: ratio not comparable"
        out.append(rec)
        emit(rec)

    logN = 12 if quick else 16
    slots = 2 ** (logN - 1)
    kw = dict(dnum=dnum) if dnum else dict(num_p=1)
    big = Parameters.create(N=2**logN, levels=18, log_q0=58, log_qi=40, log_p=58, insecure=quick,
                            name="official-2^16" if not quick else "quick-2^12", **kw)
    if "gelu" in rows:
        s = _Setup(big)
        x = np.linspace(-5, 5, slots)
        tanh_gelu = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
        put(_row("gelu3", "like_for_like", s, gelu3, s.E.encrypt(s.enc.encode(x)), tanh_gelu, gelu3_plain(x),
                 peer=PEER["gelu"], quick=quick))
        x = np.linspace(-13, 12, slots)
        put(_row("gelu4", "full", s, gelu, s.E.encrypt(s.enc.encode(x)), gelu_erf(x), gelu_plain(x)))
    if "layernorm" in rows:
        F, n = (768, 1024) if not quick else (48, 64)
        rots = [1 << i for i in range(n.bit_length() - 1)] + [-n]
        s = _Setup(big, rotations=rots)
        row = np.linspace(-10, 10, F)
        x = np.tile(np.concatenate([row, np.zeros(2 * n - F)]), slots // (2 * n))
        exact = np.tile(np.concatenate([row / np.sqrt(np.mean(row**2)), np.zeros(2 * n - F)]), slots // (2 * n))
        mask = np.arange(slots) % (2 * n) < F
        put(_row("layernorm_nomean", "like_for_like", s, lambda ev, ct: layernorm_official(ev, ct, F, n),
                 s.E.encrypt(s.enc.encode(x)), np.where(mask, exact, 0), np.where(mask, layernorm_official_plain(x, F, n), 0),
                 peer=PEER["layernorm"], quick=quick, extra={"shape": [slots // (2 * n), F]}))
        g = np.where(mask, 1.0, 0.0)
        rng = np.random.default_rng(3)
        rows_x = rng.normal(0.5, 3.0, (slots // (2 * n), F))
        x = np.zeros((slots // (2 * n), 2 * n)); x[:, :F] = rows_x
        ref = np.zeros_like(x); ref[:, :F] = layer_norm(rows_x, np.ones(F), np.zeros(F), eps=0.0)
        model = layernorm_plain(x.ravel(), F, n, g, np.zeros(slots), window=2 * n, lo=1.0, hi=64.0)
        put(_row("layernorm", "full", s, lambda ev, ct: layernorm(ev, ct, F, n, g, np.zeros(slots), window=2 * n, lo=1.0, hi=64.0),
                 s.E.encrypt(s.enc.encode(x.ravel())), ref.ravel(), model))
    if "softmax" in rows:
        n = 128 if not quick else 32
        s = _Setup(big, rotations=[1 << i for i in range(n.bit_length() - 1)] + [-n])
        row = np.linspace(-10, 0, n)
        x = np.tile(np.concatenate([row, np.zeros(n)]), slots // (2 * n))
        sm = np.exp(row) / np.exp(row).sum()
        exact = np.tile(np.concatenate([sm, np.zeros(n)]), slots // (2 * n))
        put(_row("softmax_nomax", "like_for_like", s, lambda ev, ct: softmax_official(ev, ct, n),
                 s.E.encrypt(s.enc.encode(x)), exact, softmax_official_plain(x, n), peer=PEER["softmax"], quick=quick,
                 extra={"shape": [slots // (2 * n), n]}))
        scores = np.random.default_rng(5).uniform(-4, 4, (slots // (2 * n), n))
        x = np.zeros((slots // (2 * n), 2 * n)); x[:, :n] = scores
        ex = np.exp(scores - scores.max(1, keepdims=True)); ex /= ex.sum(1, keepdims=True)
        ref = np.zeros_like(x); ref[:, :n] = ex
        bts = _TimedOracle(s.sk)
        put(_row("softmax", "full", s, lambda ev, ct: softmax(ev, ct, n, 4.0, window=2 * n, bootstrapper=bts),
                 s.E.encrypt(s.enc.encode(x.ravel())), ref.ravel(), softmax_plain(x.ravel(), n, 4.0, window=2 * n),
                 bts=bts, extra={"shape": [slots // (2 * n), n], "entries": [-4, 4]}))
    if "argmax" in rows:
        s = _Setup(big, rotations=[1, 2, 4, -8])
        x, exact, model, keep = _argmax_input(slots, argmax_plain)
        bts = _TimedOracle(s.sk)
        put(_row("argmax8", "like_for_like", s,
                 lambda ev, ct: argmax(ev, ct, 8, window=16, bootstrapper=bts),
                 s.E.encrypt(s.enc.encode(x)), np.where(keep, exact, 0), np.where(keep, model, 0), bts=bts,
                 peer=PEER["argmax"], quick=quick,
                 extra={"note": "official: N = 2^15, sparse secret, real bootstrapping (3 x ~40 s); here N = 2^16 "
                                "chain with the oracle; x[3] = 0.5 and x[7] = 0.499999 tie within the Sgn resolution"}))
    if "qk" in rows:  # ct-ct Q K^T: the batched packing against the paper's per-pair form
        qp = Parameters.create(N=2**11, levels=2, insecure=True) if quick else preset("128-2^13")
        n, d = (8, 16) if quick else (32, 64)
        rot = [1 << i for i in range(d.bit_length() - 1)] + [-r for r in range(1, d)] + [-d]
        s = _Setup(qp, rotations=rot)
        rng = np.random.default_rng(7)
        Q, K = rng.uniform(-0.5, 0.5, (n, d)), rng.uniform(-0.5, 0.5, (n, d))
        S = Q @ K.T
        slots = qp.slots
        q_rep = [s.E.encrypt(s.enc.encode(layout_row_replicated(Q, i, slots))) for i in range(n)]
        k_flat = s.E.encrypt(s.enc.encode(layout_row_major(K, slots)))
        want = layout_interleaved(S, 0, d, slots)
        put(_row("qk_batched", "full", s, lambda ev_, ct: qk_scores(ev_, q_rep, k_flat, n, d)[0], k_flat, want, want,
                 quick=quick, extra={"shape": [n, d], "packing": "interleaved, batched over the keys"}))
        pad = lambda r: np.concatenate([r, np.zeros(slots - d)])  # noqa: E731
        q_rows = [s.E.encrypt(s.enc.encode(pad(q))) for q in Q]
        k_rows = [s.E.encrypt(s.enc.encode(pad(k))) for k in K]
        rec = _row("qk_pairwise", "full", s, lambda ev_, ct: qk_scores_pairwise(ev_, q_rows[:1], k_rows, n, d)[0],
                   k_rows[0], np.concatenate([S[0], np.zeros(slots - n)]), np.concatenate([S[0], np.zeros(slots - n)]),
                   quick=quick, extra={"shape": [n, d], "packing": "the paper's per-pair form", "rows_measured": 1})
        rec["all_rows_s"] = round(rec["median_s"] * n, 3)  # the n query rows cost the same each
        rec["all_rows_counts"] = {k: v * n for k, v in rec["counts"].items()}
        put(rec)
    if "softmax_boot" in rows:  # the paper-size Softmax with real bootstrapping at 128-bit security
        n = 128 if not quick else 32
        s = real = None  # free the previous row's keys first (a 2^16 key set is ~10 GB)
        s, real = _boot_setup(quick, rotations=[1 << i for i in range(n.bit_length() - 1)] + [-n])
        bslots = s.p.slots
        scores = np.random.default_rng(5).uniform(-4, 4, (bslots // (2 * n), n))
        x = np.zeros((bslots // (2 * n), 2 * n)); x[:, :n] = scores
        ex = np.exp(scores - scores.max(1, keepdims=True)); ex /= ex.sum(1, keepdims=True)
        ref = np.zeros_like(x); ref[:, :n] = ex
        rec = _row("softmax_bootstrapped", "full", s, lambda ev_, ct: softmax(ev_, ct, n, 4.0, window=2 * n, bootstrapper=real),
                   s.E.encrypt(s.enc.encode(x.ravel(), level=real.output_level)), ref.ravel(),
                   softmax_plain(x.ravel(), n, 4.0, window=2 * n), peer=PEER["softmax"], quick=quick,
                   extra={"shape": [bslots // (2 * n), n], "entries": [-4, 4], "bootstrapper": real.describe(),
                          "security": s.p.security_note,
                          "note": "the official Softmax has no QuickMax and no bootstrapping (inputs <= 0): "
                                  "the ratio compares unequal work"})
        rec["bootstraps"] = real.calls  # real bootstrapping, its time included
        put(rec)
    if "argmax_boot" in rows:  # the full block with real bootstrapping at 128-bit security
        s = real = None  # free the previous row's keys first (a 2^16 key set is ~10 GB)
        s, real = _boot_setup(quick, rotations=[1, 2, 4, -8])
        bp = s.p
        bslots = bp.slots
        x, exact, model, keep = _argmax_input(bslots, argmax_plain)
        rec = _row("argmax8_bootstrapped", "full", s, lambda ev_, ct: argmax(ev_, ct, 8, window=16, bootstrapper=real),
                   s.E.encrypt(s.enc.encode(x, level=real.output_level)), np.where(keep, exact, 0),
                   np.where(keep, model, 0), peer=PEER["argmax"], quick=quick,
                   extra={"bootstrapper": real.describe(), "security": bp.security_note,
                          "note": "official: N = 2^15, insecure bootstrapping parameters, 3 bootstraps of ~40 s; "
                                  "x[3] = 0.5 and x[7] = 0.499999 tie within the Sgn resolution (see max_err_model)"})
        rec["bootstraps"] = real.calls  # real bootstrapping, its time included
        put(rec)
    if "matmul" in rows:
        m, n, k = (4096, 768, 64) if not quick else (256, 48, 16)
        p = Parameters.create(N=2**13 if not quick else 2**11, levels=1, log_q0=60, log_qi=40, log_p=60, num_p=1,
                              insecure=quick)
        s = _Setup(p, elements=subs_elements_for(p.N, n * k))
        rng = np.random.default_rng(42)
        A, B = rng.uniform(-1, 1, (m, n)), rng.uniform(-1, 1, (n, k))
        cts = compress_matrix(s.enc, s.E, B)
        exact = (A @ B)[:, 0]
        rec = _row("matmul_compressed", "like_for_like", s, lambda ev, ct: matmul_compressed(ev, A, cts, k), cts[0],
                   np.pad(exact, (0, p.slots - m)), np.pad(exact, (0, p.slots - m)), peer=PEER["matmul"], quick=quick,
                   extra={"shape": [m, n, k], "compressed_cts": len(cts)})
        put(rec)
    return out

