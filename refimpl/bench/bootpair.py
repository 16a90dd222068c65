"""One bootstrap pair measured side by side: refimpl (refimpl.bench.bootjob, its own process) and
OpenFHE's EvalBootstrap (refimpl.bench.peers) at the same N, slots, level budget and levels after
bootstrapping, one after the other in one run, with the machine's load beside each: JSON out.

Usage: python -m refimpl.bench.bootpair '{"preset": "128-2^16-dense", "levels_after": 18,
                                          "threads": "default", "reps": 3, "json": "out.json"}'
("params": {...} in place of "preset": bootstrap_parameters' arguments, e.g. a chain at a smaller N;
"cache_diagonals": false, refimpl's diagonals encoded in every bootstrap; "wait_mem_gib": 17, each
side starts only once that much memory is available.)
OpenFHE refuses 128-bit for that many levels at N = 2^16 ("ring dimension ... 131072") and runs
its own chain with security off, as in `refimpl bench ckks`.
"""

from __future__ import annotations

import json
import os
import sys
import time

from . import peers
from .ckks import measure_bootstrap


def _load() -> dict:
    la = os.getloadavg()
    avail = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                avail = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"loadavg_1_5_15": [round(x, 2) for x in la], "mem_available_gib": avail, "cpus": os.cpu_count()}


def wait_for_memory(gib: float | None, timeout_s: float = 3600.0) -> float:
    """Sleep until MemAvailable >= gib (the other side of a shared machine may hold memory that no
    lock covers); returns the seconds waited (0 without a threshold or without /proc/meminfo)."""
    t0 = time.monotonic()
    while gib:
        avail = _load()["mem_available_gib"]
        if avail is None or avail >= gib or time.monotonic() - t0 > timeout_s:
            break
        time.sleep(10)
    return time.monotonic() - t0


def run(cfg: dict) -> dict:
    mode = str(cfg.get("threads", "default"))
    ours_cfg = {"level_budget": [3, 3], "reps": cfg.get("reps", 3), "threads": mode,
                "expand_keys": cfg.get("expand_keys", False), "cache_diagonals": cfg.get("cache_diagonals", True)}
    if cfg.get("params"):  # explicit bootstrap_parameters(**params), e.g. a preset's chain at a smaller N
        ours_cfg["params"] = cfg["params"]
    else:
        ours_cfg["preset"] = cfg["preset"]
    waited = {"before_refimpl_s": wait_for_memory(cfg.get("wait_mem_gib"))}  # e.g. 17: OpenFHE's peak at N = 2^16
    load_before = _load()
    ours = measure_bootstrap(ours_cfg)
    waited["before_openfhe_s"] = wait_for_memory(cfg.get("wait_mem_gib"))
    load_between = _load()
    peer = peers.run_peer("openfhe", "boot_openfhe", {
        "N": ours.get("N"), "slots": ours.get("slots"), "level_budget": [3, 3], "levels_after": cfg["levels_after"],
        "secret": "uniform", "security": "none", "reps": cfg.get("peer_reps", 1),
        "threads": 1 if mode == "1" else None}, timeout=3600)
    rec = {"name": "ckks.bootstrap", "threads": mode, "refimpl": ours, "openfhe": peer,
           "load": {"before_refimpl": load_before, "before_openfhe": load_between, "after": _load()}}
    if cfg.get("wait_mem_gib"):
        rec["waited_for_memory"] = waited
    if ours.get("median_s") and peer.get("median_s"):
        rec["ratio"] = ours["median_s"] / peer["median_s"]
    return rec


if __name__ == "__main__":
    cfg = json.loads(sys.argv[1])
    out = run(cfg)
    text = json.dumps(out, indent=1)
    if cfg.get("json"):
        with open(cfg["json"], "w") as f:
            f.write(text + "\n")
    print(text)
