"""`refimpl bench aby3`: ABY3 protocol costs at BERT-base shapes, beside SecretFlow SPU.

Per item: bytes (all three parties), rounds (critical path), the largest per-party count
of sends (SPU's "send actions"), wall time of the 3-thread in-memory simulation (median),
LAN/WAN estimates (refimpl.aby3.network.LAN/WAN: compute + rounds RTT + max party bytes /
bandwidth), and the max abs error against float64 (refimpl.bert.functional). SPU 0.9.5 is
run in the same process tree when its venv exists (~/.cache/refimpl/peers/spu, see
refimpl/bench/peer_scripts/spu_aby3.py); otherwise the figures SPU gave on this machine
(SPU 0.9.5 measured on this machine, refimpl/constants.toml [aby3.spu_anchor], as SPU_ANCHOR; the two
softmax-freeDiv entries are ours, re-measured after the max-shift change) are printed as
the reference, marked "peer_source": "anchor".
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from refimpl.aby3 import arith, attention as A, boolean as B
from refimpl.aby3.encoder import LAYER_KEYS, encoder_layer
from refimpl.aby3.kernels import matmul_u64
from refimpl.aby3.network import LAN, WAN
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, reveal_bool, share_input
from refimpl.bert import functional as Fn
from refimpl.bert.config import BertConfig
from refimpl.bert.model import layer_forward
from refimpl.constants import C

# SPU 0.9.5 on this machine, per item: (bytes of the three parties, max send actions over parties,
# wall s, max abs error); the per-element items have no wall or error. Source and conditions:
# refimpl/constants.toml [aby3.spu_anchor].
SPU_ANCHOR = {k: tuple(v) + (None,) * (4 - len(v)) for k, v in C["aby3"]["spu_anchor"].items() if k != "source"}
SPU_PYTHON = Path(os.environ.get("REFIMPL_PEER_DIR") or Path.home() / ".cache" / "refimpl" / "peers") / "spu" / "bin" / "python"
SPU_SCRIPT = Path(__file__).parent / "peer_scripts" / "spu_aby3.py"


def _shapes(quick: bool) -> dict:
    if quick:
        return dict(n=32, d=128, heads=2, ff=512, elems=(32, 512), reps=1)
    return dict(n=128, d=768, heads=12, ff=3072, elems=(128, 3072), reps=3)


def measure(name: str, params: dict, inputs: list, fn, ref, reps: int, *, bool_out: bool = False) -> dict:
    """Run fn(p, *shares) `reps` times (inputs shared by party 0 outside the timed part)."""
    walls, res, out = [], None, None
    for rep in range(reps):
        barrier = threading.Barrier(3)
        times = [None] * 3

        def prog(p):
            xs = [share_input(p, o, x if p.id == o else None) for o, x in inputs]
            barrier.wait()
            t0 = time.perf_counter()
            with p.net.scope("op"):
                y = fn(p, *xs)
            times[p.id] = (t0, time.perf_counter())
            return reveal_bool(p, y) if bool_out else reveal(p, y)

        res = simulate(prog, insecure_seed=rep)
        walls.append(max(t[1] for t in times) - min(t[0] for t in times))
        out = res.outputs[0]
    st = res.scope("op")
    max_party = max(n.scopes["op"].bytes_sent for n in res.nets)
    med = statistics.median(walls)
    err = None if ref is None else float(np.max(np.abs(np.asarray(out, dtype=np.float64) - ref)))
    if "fail_threshold" in params:  # fraction of elements with a large (wrap-around) error
        params = {**params, "fail_rate": float(np.mean(np.abs(out - ref) > params["fail_threshold"]))}
    row = {
        "name": name, **params, "bytes": st["bytes"], "rounds": st["rounds"], "max_sends": st["sends"],
        "median_s": round(med, 4), "lan_s": round(LAN.estimate(med, st["rounds"], max_party), 4),
        "wan_s": round(WAN.estimate(med, st["rounds"], max_party), 4), "max_abs_err": err,
    }
    elems = params.get("elements")
    if elems:
        row["bytes_per_element"] = round(st["bytes"] / elems, 2)
    return row


def random_layer_weights(rng, d: int, ff: int) -> dict:
    """Random float64 weights of one encoder layer (LAYER_KEYS; linear weights [out, in], scaled 1 / sqrt(in))."""
    w = {}
    for k in LAYER_KEYS:
        out_in = {"intermediate": (ff, d), "output.dense": (d, ff)}
        shape = next((v for pre, v in out_in.items() if k.startswith(pre)), (d, d))
        if k.endswith("LayerNorm.weight"):
            w[k] = 1 + 0.1 * rng.normal(size=d)
        elif k.endswith("LayerNorm.bias"):
            w[k] = 0.1 * rng.normal(size=d)
        elif k.endswith("weight"):
            w[k] = rng.normal(size=shape) / math.sqrt(shape[1])
        else:
            w[k] = 0.1 * rng.normal(size=shape[0])
    return w


def layer_reference(x, w, mask, heads, attention, act):
    """The float64 BERT layer of the plaintext model, refimpl.bert.model.layer_forward (the oracle). x [n, d], mask [n]."""
    n, d = x.shape
    config = BertConfig(hidden_size=d, num_attention_heads=heads, intermediate_size=w["intermediate.dense.weight"].shape[0],
                        num_hidden_layers=1, attention=attention, activation=act)
    return layer_forward(w, config, np.asarray(x, np.float64)[None], np.asarray(mask)[None])[0]


LAYERS = [("softmax", "gelu"), ("softmax", "gelu_poly4"), ("2quad", "quad"), ("2relu", "relu"),
          ("softmax-freediv", "quad"), ("2quad-freediv", "quad")]


def items(quick: bool):
    """(name, params, inputs, fn, ref, bool_out, reps) for every measured item."""
    sh = _shapes(quick)
    rng = np.random.default_rng(0)
    n, d, h, ff, reps = sh["n"], sh["d"], sh["heads"], sh["ff"], sh["reps"]
    x = rng.normal(0, 1.5, sh["elems"])
    y = rng.normal(0, 1.5, sh["elems"])
    E = x.size
    yield "fxp_mul", {"shape": list(x.shape), "elements": E}, [(0, x), (0, y)], \
        lambda p, a, b: arith.fxp_mul(p, a, b), x * y, False, reps
    yield "truncate", {"shape": list(x.shape), "elements": E, "d": 18}, [(0, x * 2**18)], \
        lambda p, a: arith.truncate(p, a), x, False, reps
    yield "truncate_share", {"shape": list(x.shape), "elements": E, "d": 18, "note": "ABY3 §5.1; can fail"}, \
        [(0, x * 2**18)], lambda p, a: arith.truncate_share(p, a, 18), x, False, reps
    big = rng.uniform(-2.0**20, 2.0**20, sh["elems"])  # raw ~2^56 after the 2^18 scaling: a 2f-scaled product
    yield "truncate_share_2f", {"shape": list(x.shape), "elements": E, "d": 18, "fail_threshold": 1e-3,
                                "note": "ABY3 §5.1 on values ~2^56: fails w.p. ~|x|/2^63"}, \
        [(0, big * 2**18)], lambda p, a: arith.truncate_share(p, a, 18), big, False, 1
    yield "truncate_2f", {"shape": list(x.shape), "elements": E, "d": 18, "fail_threshold": 1e-3}, \
        [(0, big * 2**18)], lambda p, a: arith.truncate(p, a), big, False, 1
    yield "a2b", {"shape": list(x.shape), "elements": E}, [(0, x)], lambda p, a: B.a2b(p, a), None, True, reps
    yield "msb", {"shape": list(x.shape), "elements": E}, [(0, x)], lambda p, a: B.msb(p, a), \
        (x < 0).astype(float), True, reps
    a, b = rng.normal(size=(n, d)), rng.normal(size=(d, d)) / math.sqrt(d)
    yield "matmul", {"shape": [n, d, d], "elements": n * d}, [(0, a), (1, b)], \
        lambda p, u, v: arith.fxp_matmul(p, u, v), a @ b, False, reps
    s = rng.normal(0, 2, (h, n, n))
    mask = np.ones(n)
    for v in A.VARIANTS:
        yield f"attn_{v}", {"shape": [h, n, n], "elements": s.size}, [(0, s)], \
            (lambda v: lambda p, t: A.attention_probs(p, t, mask, v))(v), Fn.attention_probs(s, mask, v), False, reps
    for act in ("gelu", "gelu_poly4", "quad", "relu"):
        yield f"act_{act}", {"shape": list(x.shape), "elements": E}, [(0, x)], \
            (lambda act: lambda p, t: A.activation(p, t, act))(act), Fn.activation(x, act), False, reps
    z = rng.normal(0, 2, (n, d))
    g, bt = 1 + 0.1 * rng.normal(size=d), 0.1 * rng.normal(size=d)
    yield "layernorm", {"shape": [n, d], "elements": z.size, "weights": "secret"}, [(0, z), (1, g), (1, bt)], \
        lambda p, t, gg, bb: A.layer_norm(p, t, gg, bb), Fn.layer_norm(z, g, bt), False, reps
    w = random_layer_weights(rng, d, ff)
    xl = rng.normal(size=(n, d))
    for att, act in LAYERS:
        keys = list(LAYER_KEYS)
        fn = (lambda att, act: lambda p, xs, *ws: encoder_layer(
            p, xs, dict(zip(keys, ws)), mask, heads=h, attention=att, act=act))(att, act)
        yield f"layer_{att}_{act}", {"n": n, "d": d, "heads": h, "ff": ff, "weights": "secret"}, \
            [(0, xl)] + [(1, w[k]) for k in keys], fn, layer_reference(xl, w, mask, h, att, act), False, 1


def run_spu(all_items: list) -> tuple[dict, str]:
    """SPU on the same items and inputs, in its own venv and interpreter; or {} and the reason."""
    if os.environ.get("REFIMPL_NO_PEERS"):
        return {}, "REFIMPL_NO_PEERS is set"
    if not SPU_PYTHON.exists():
        return {}, f"no SPU venv at {SPU_PYTHON.parent.parent} (python3.11 -m venv DIR && DIR/bin/pip install spu==0.9.5)"
    cfg_items, arrays = [], {}
    for name, params, inputs, _fn, _ref, bool_out, _reps in all_items:
        if bool_out:
            continue
        for i, (_, arr) in enumerate(inputs):
            arrays[f"{name}/{i}"] = np.asarray(arr, dtype=np.float32)
        n = params.get("n") or params.get("shape", [0])[-1]
        cfg_items.append({"name": name, "n_inputs": len(inputs), "n": int(n), "heads": int(params.get("heads", 1)),
                          "c": A.QUAD_C, "quad": list(Fn.QUAD), "gelu_P": list(Fn.GELU_P), "gelu_Q": list(Fn.GELU_Q),
                          "inv_f": {v: float(1.0 / Fn.freediv_denominator(float(n), *A.FREEDIV[v])) for v in A.FREEDIV}})
    with tempfile.TemporaryDirectory() as tmp:
        fin, fout = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(fin, **arrays)
        try:
            proc = subprocess.run([str(SPU_PYTHON), str(SPU_SCRIPT)], capture_output=True, text=True, timeout=3600,
                                  input=json.dumps({"inputs": str(fin), "outputs": str(fout), "items": cfg_items}))
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            outs = dict(np.load(fout))
        except Exception as e:  # noqa: BLE001 - a missing peer is reported, never fatal
            return {}, f"SPU run failed: {e!r}"[:300]
    for name, params, inputs, _fn, ref, _b, _r in all_items:
        if name in outs and ref is not None and "bytes" in res.get(name, {}):
            res[name]["max_abs_err"] = float(np.max(np.abs(outs[name] - ref)))
    return res, ""


def main(quick: bool = False, json_path: str | None = None, threads: str | None = None) -> int:
    """Print one JSON line per item (and the peer status first); optionally write one JSON document."""
    rows = []
    matmul_u64(np.ones((2, 2), np.uint64), np.ones((2, 2), np.uint64))  # load the numba kernel first
    all_items = list(items(quick))
    spu, why = run_spu(all_items)
    print(json.dumps({"peer": "spu-0.9.5", "threads": f"3 party threads on {os.cpu_count()} cores "
                      f"(--threads {threads or 'both'} has no effect: numba kernels are single-threaded)",
                      **({"measured": "same run"} if spu else {
        "missing": why, "reference": "anchor figures of SPU 0.9.5 (refimpl/constants.toml [aby3.spu_anchor]) "
                                     "(SPU 0.9.5 on this machine, n = 128; the softmax-freeDiv items re-measured by refimpl "
                                     "after the max shift, loaded machine), printed for full-size items"})}), flush=True)
    for name, params, inputs, fn, ref, bool_out, reps in all_items:
        row = measure(name, params, inputs, fn, ref, reps, bool_out=bool_out)
        peer, src = spu.get(name), "same run"
        if (peer is None or "bytes" not in peer) and not quick and name in SPU_ANCHOR:
            bt, acts, wall, err = SPU_ANCHOR[name]
            peer, src = {"bytes": bt, "send_actions": acts, "wall_s": wall, "max_abs_err": err}, "anchor"
        if peer and "bytes" in peer:
            row.update({"peer": "spu-0.9.5", "peer_source": src, "peer_bytes": peer["bytes"],
                        "peer_send_actions": peer["send_actions"], "peer_median_s": peer.get("wall_s"),
                        "peer_max_abs_err": peer.get("max_abs_err")})
            row["bytes_ratio"] = round(row["bytes"] / peer["bytes"], 4)
            if peer.get("wall_s"):
                row["ratio"] = round(row["median_s"] / peer["wall_s"], 4)
        elif peer:
            row["peer_error"] = peer.get("error")
        rows.append(row)
        print(json.dumps(row), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps({"bench": "aby3", "quick": quick, "cores": os.cpu_count(),
                                               "lan": LAN.__dict__, "wan": WAN.__dict__, "items": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(quick="--quick" in sys.argv))
