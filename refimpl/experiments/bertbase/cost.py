"""A time model from counts (ours): the forward's operations tallied by level on the DryEvaluator, times
each operation's measured seconds at that level, plus the bootstraps at their measured time.

    t(forward) = sum over op, level of  ops[op@level] x unit[op](level)  +  bootstraps x t(bootstrap)

`measure_units` times each operation of refimpl.nexus.counting.OPS on real ciphertexts of a parameter set
at a few levels (median process CPU seconds of `reps`; meant for one numba thread, where CPU seconds are
the wall time of a quiet machine); `unit` interpolates linearly between the
measured levels (the work of every operation grows with the limbs l + 1). `predict` applies the sum; with
a weight store (refimpl.nexus.bert.weights_store) the plaintexts the forward takes from it cost an
`expand` instead of an encoding (`store_hits`: counted by a stand-in store on the same dry run).

What the model leaves out: Python and memory traffic between operations, the cost of keeping ciphertexts
alive, and the load of the machine; `validate` compares it with a real forward's CPU time on a small ring.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import numpy as np

from ...bert.model import init_params
from ...ckks import Encoder, Encryptor, Evaluator, KeyGenerator
from ...ckks.bootstrap.bootstrapper import bootstrap_parameters
from ...ckks.keys import galois_element
from ...ckks.bootstrap.oracle import OracleBootstrapper
from ...nexus import bert as nb
from ...nexus.bert.weights_store import expand, integer_coefficients, stride_of
from ...nexus.counting import OPS, DryBootstrapper, DryEvaluator
from ...ring.sampling import RandomSource
from .plan import MODELS, config

HOIST_K = 8  # rotate_hoisted is timed with 1 and HOIST_K rotations: modup = t(1) - hoisted, hoisted = slope
MAC_TERMS = 16  # mul_plain_sum is timed on this many terms (the fewest of a BERT-base giant step); mac = t / MAC_TERMS


def _medians(reps: int, f, *args) -> tuple[float, float]:
    """Median process CPU seconds and median wall seconds of f(*args), after one warm-up call (numba compilation,
    caches)."""
    f(*args)
    cpu, wall = [], []
    for _ in range(reps):
        t, w = time.process_time(), time.perf_counter()
        f(*args)
        cpu.append(time.process_time() - t)
        wall.append(time.perf_counter() - w)
    return float(np.median(cpu)), float(np.median(wall))


def _median(reps: int, f, *args) -> float:
    """Median process CPU seconds of f(*args) (one numba thread: CPU time is what a quiet machine's wall time
    would be, and a loaded machine changes it far less than the wall time)."""
    return _medians(reps, f, *args)[0]


def _units_from(times: dict, levels: list[int]) -> dict:
    """{op: [seconds per level]} from the raw timings of one thread count and clock (ours): modup and hoisted
    from the hoisted rotation of 1 and HOIST_K steps, mac per term."""
    out: dict = {"levels": levels}
    for op in (*OPS, "expand"):
        out[op] = []
    for t in times:
        hoisted = max((t["hoist_many"] - t["hoist_one"]) / (HOIST_K - 1), 0.0)
        row = {k: v for k, v in t.items() if not k.startswith("hoist_")}
        row.update(modup=max(t["hoist_one"] - hoisted, 0.0), hoisted=hoisted, mac=t["mac"] / MAC_TERMS)
        for op, v in row.items():
            out[op].append(v)
    return out


def measure_units(params, levels, reps: int = 3, period: int = 256, progress=None, threads=None) -> dict:
    """Seconds per operation at each level: {"levels": [...], op: [seconds per level], "expand": [...]}.

    Keys: relinearization and rotations 1 .. HOIST_K (insecure seeded: timing only). `expand`: a weight
    store's plaintext of a diagonal with slot period `period` (2 period coefficients kept).

    threads None: process CPU seconds at numba's current thread count (the one-thread units). threads a tuple
    of counts (ours): each operation is timed at every count in turn, side by side (numba.set_num_threads),
    and the result adds "by_threads": {count: {"wall": units, "cpu": units}} (wall seconds are the time of
    several threads; CPU seconds count every thread's work); the top level's units are then the wall seconds
    of the last count."""
    import numba

    kg = KeyGenerator(params, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    steps = list(range(1, HOIST_K + 1))  # rotation keys made at the highest level timed (a key switch at level l
    top = max(int(v) for v in levels)      # reads only the key's rows of Q_l P: the same work, less memory)
    ev = Evaluator(params, kg.evaluation_keys(sk, rotations=steps,
                                              levels={galois_element(params, r): top for r in steps}))
    enc, E = Encoder(params), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(2))
    rng = np.random.default_rng(0)
    per = min(period, params.slots)
    z = np.tile(rng.uniform(-1, 1, per), params.slots // per)
    kept_full = integer_coefficients(params, z, params.scale)
    stride = stride_of(kept_full)
    kept = kept_full[::stride].astype(np.int64)
    lv = [int(v) for v in levels]
    counts = (numba.get_num_threads(),) if threads is None else tuple(int(t) for t in threads)
    raw: dict = {t: ([], []) for t in counts}  # per count: (cpu rows, wall rows), one row per level
    out: dict = {"levels": lv, "reps": reps, "expand_stride": stride, "load_average_start": os.getloadavg()}
    prev = numba.get_num_threads()
    try:
        for i, lvl in enumerate(lv):
            a = E.encrypt(enc.encode(z, level=lvl))
            b = E.encrypt(enc.encode(z[::-1].copy(), level=lvl))
            pt = enc.encode(z, level=lvl)
            c3 = ev.multiply(a, b, relinearize=False)
            calls = {
                "hoist_one": (ev.rotate_hoisted, a, [1]),
                "hoist_many": (ev.rotate_hoisted, a, list(range(1, HOIST_K + 1))),
                "rotate": (ev.rotate, a, 1),
                "tensor": (ev.multiply, a, b, False),
                "relin": (ev.relinearize, c3),
                "pt_mult": (ev.mul_plain, a, pt),
                "scalar": (ev.mul_const, a, 0.37),
                "add": (ev.add, a, b),
                "rescale": (ev.rescale, c3) if lvl > 0 else None,
                "encode": (enc.encode, z, lvl),
                "expand": (expand, kept, stride, lvl, params),
                "mac": (ev.mul_plain_sum, [a, b] * (MAC_TERMS // 2), [pt] * MAC_TERMS),
            }
            rows = {t: ({}, {}) for t in counts}
            for op, call in calls.items():
                for t in counts:  # side by side: every count of one operation before the next operation
                    numba.set_num_threads(t)
                    cpu, wall = _medians(reps, *call) if call is not None else (0.0, 0.0)
                    rows[t][0][op], rows[t][1][op] = cpu, wall
            for t in counts:
                raw[t][0].append(rows[t][0])
                raw[t][1].append(rows[t][1])
            if progress is not None:
                progress("unit costs: levels", i + 1, len(lv))
    finally:
        numba.set_num_threads(prev)
    if threads is None:
        out.update({k: v for k, v in _units_from(raw[counts[0]][0], lv).items() if k != "levels"})
    else:
        out["by_threads"] = {str(t): {"wall": _units_from(raw[t][1], lv), "cpu": _units_from(raw[t][0], lv)}
                             for t in counts}
        out.update({k: v for k, v in out["by_threads"][str(counts[-1])]["wall"].items() if k != "levels"})
        out["clock"] = f"wall seconds at {counts[-1]} numba threads"
    out["load_average_end"] = os.getloadavg()
    return out


def mac_unit(ev, a, b, pt, reps: int) -> float:
    """Seconds per term of Evaluator.mul_plain_sum over MAC_TERMS terms (a and b alternately, times pt)."""
    return _median(reps, ev.mul_plain_sum, [a, b] * (MAC_TERMS // 2), [pt] * MAC_TERMS) / MAC_TERMS


def measure_mac(params, levels, reps: int = 3) -> list[float]:
    """The "mac" unit alone at each of `levels` (no evaluation keys needed), to add to units measured before
    it existed (refimpl experiment unit-costs --add-mac)."""
    kg = KeyGenerator(params, RandomSource.insecure_seeded(1))
    enc, E = Encoder(params), Encryptor(kg.public_key(kg.secret_key()), RandomSource.insecure_seeded(2))
    z = np.random.default_rng(0).uniform(-1, 1, params.slots)
    ev, out = Evaluator(params), []
    for lvl in levels:
        a, b = E.encrypt(enc.encode(z, level=int(lvl))), E.encrypt(enc.encode(z[::-1].copy(), level=int(lvl)))
        out.append(mac_unit(ev, a, b, enc.encode(z, level=int(lvl)), reps))
    return out


def unit(units: dict, op: str, level: int) -> float:
    """Seconds of `op` at `level`, linear between the measured levels (flat beyond them). Units measured before
    the fused multiply-accumulate existed price a "mac" term as the chain it replaces: a pt_mult and an add."""
    if op == "mac" and "mac" not in units:
        return unit(units, "pt_mult", level) + unit(units, "add", level)
    return float(np.interp(level, units["levels"], units[op]))


def parse(ops: Counter | dict) -> dict[str, Counter]:
    """{"op@level": n} -> {op: {level: n}}."""
    out: dict[str, Counter] = {}
    for key, n in ops.items():
        op, lvl = key.split("@")
        out.setdefault(op, Counter())[int(lvl)] += n
    return out


def predict(ops, units: dict, bootstraps: int = 0, bootstrap_s: float = 0.0, store_hits=None) -> dict:
    """Seconds per operation kind and in total: the counts `ops` ("op@level" -> n) times `units`; store_hits
    ("expand@level" -> n): encodings replaced by a store's expansion."""
    by = parse(ops)
    sec = {op: sum(n * unit(units, op, lvl) for lvl, n in by.get(op, {}).items()) for op in OPS}
    if store_hits:
        hits = parse(store_hits).get("expand", {})
        sec["encode"] -= sum(n * (unit(units, "encode", lvl) - unit(units, "expand", lvl)) for lvl, n in hits.items())
    sec["bootstrap"] = bootstraps * bootstrap_s
    sec["total"] = sum(sec.values())
    return {k: round(v, 3) for k, v in sec.items()}


class CountingStore:
    """A stand-in weight store for the dry run (ours): counts the plaintexts a store would give ("expand@level")
    and gives none, so the forward encodes them as without a store (the model subtracts the difference)."""

    def __init__(self):
        self.hits: Counter = Counter()

    def check(self, params, model, lay) -> None:
        """Nothing to check: the dry run's store holds nothing."""

    def plaintext(self, key: tuple, level: int):
        self.hits[f"expand@{level}"] += 1
        return None


class Excluding:
    """A bootstrapper whose own CPU time is kept apart (`spent`): the oracle's decrypt and re-encrypt are not part
    of the forward's compute."""

    def __init__(self, bts):
        self.bts, self.spent = bts, 0.0
        self.output_level, self.output_scale = bts.output_level, bts.output_scale

    def bootstrap(self, ct):
        t = time.process_time()
        r = self.bts.bootstrap(ct)
        self.spent += time.process_time() - t
        return r


def validate(logN: int = 13, n: int = 16, hidden: int = 64, heads: int = 4, layers: int = 1, reps: int = 3,
             models=("2quad-freediv-quad", "softmax-gelu"), progress=None) -> dict:
    """The model against a real forward on a small ring (insecure, timing only): per model, the measured
    process CPU seconds of the encrypted forward (refreshes by an oracle, their time excluded) and the seconds
    `predict` gives from the same forward's dry counts and units measured on the same ring, side by side."""
    params, rc = bootstrap_parameters(1 << logN, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
    top = params.L - rc.depth
    units = measure_units(params, [1, 5, 10, 15, top], reps=reps, period=min(params.slots, 256), progress=progress)
    out: dict = {"N": params.N, "n": n, "hidden": hidden, "heads": heads, "layers": layers, "units": units,
                 "security": "INSECURE small ring (timing only)", "models": {}}
    for name in models:
        cfg = config(name, layers=layers, hidden_size=hidden, num_attention_heads=heads, intermediate_size=4 * hidden)
        rng = np.random.default_rng(1)
        weights = init_params(cfg, rng, dtype=np.float64)
        model = nb.NexusModel(cfg, weights, ranges={
            "score_bound": 8.0, "var": {f"L{i}.ln{j}": (0.5, 4.0) for i in range(layers) for j in (1, 2)},
            "act": (-6.0, 6.0), "absmax": {}})
        lay = nb.input_layout(cfg, n, params.slots, head_rows=True)
        mask = np.ones(n)
        dev, dbts = DryEvaluator(params), DryBootstrapper(params, top)
        nb.encrypted_forward(dev, dbts, model, [dev.fresh(top) for _ in range(lay.chunks(lay.d))], n, mask,
                             head_rows=True)
        kg = KeyGenerator(params, RandomSource.insecure_seeded(3))
        sk = kg.secret_key()
        ev = Evaluator(params, kg.evaluation_keys(sk, rotations=nb.rotation_steps(cfg, n, params.slots, head_rows=True),
                                                  conjugate=True))
        oracle = OracleBootstrapper(sk, output_level=top, rng=RandomSource.insecure_seeded(5))
        timed = Excluding(oracle)

        enc, E = Encoder(params), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4))
        x = rng.normal(0, 1, (n, hidden))
        cts = [E.encrypt(enc.encode(v, level=top)) for v in nb.pack_input(x, lay)]
        walls = []
        for _ in range(2):  # the first run also loads numba's cached kernels and builds masks: the second counts
            timed.spent = 0.0
            t = time.process_time()
            nb.encrypted_forward(ev, timed, model, cts, n, mask, head_rows=True)
            walls.append(time.process_time() - t - timed.spent)
        wall = walls[-1]
        pred = predict(dev.ops, units)
        out["models"][name] = {"measured_cpu_s": round(wall, 2), "first_run_cpu_s": round(walls[0], 2), "predicted_s": pred["total"], "predicted": pred,
                               "ratio_measured_over_predicted": round(wall / pred["total"], 3),
                               "bootstraps": dbts.calls, "attention": MODELS[name][0]}
        if progress is not None:
            progress("validate: models", len(out["models"]), len(models))
    return out
