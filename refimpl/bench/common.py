"""Shared benchmark plumbing: timing, thread control, JSON output."""

from __future__ import annotations

import json
import sys
import time
from statistics import median
from typing import Callable


def median_min_s(fn: Callable[[], object], reps: int) -> tuple[float, float]:
    """(median, min) wall time of `reps` calls after one untimed warm-up call."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return median(ts), min(ts)


def median_s(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of `reps` calls after one untimed warm-up call."""
    return median_min_s(fn, reps)[0]


def set_threads(mode: str) -> int:
    """'1' -> one numba thread; 'default' -> all numba threads. Returns the count in use."""
    import numba

    numba.set_num_threads(1 if mode == "1" else numba.config.NUMBA_NUM_THREADS)
    return numba.get_num_threads()


def thread_modes(threads: str | None) -> list[str]:
    if threads in (None, "both"):
        return ["1", "default"]
    if threads not in ("1", "default"):
        raise SystemExit(f"--threads must be '1', 'default' or 'both', got {threads!r}")
    return [threads]


class Report:
    """Prints each record as a JSON line at once; optionally writes all of them as one document."""

    def __init__(self, bench: str, json_path: str | None):
        self.bench = bench
        self.json_path = json_path
        self.records: list[dict] = []

    def emit(self, record: dict) -> None:
        self.records.append(record)
        print(json.dumps(record), flush=True)

    def note(self, text: str) -> None:
        print(f"# {text}", file=sys.stderr, flush=True)

    def close(self, meta: dict | None = None) -> None:
        if self.json_path:
            with open(self.json_path, "w") as f:
                json.dump({"bench": self.bench, **(meta or {}), "records": self.records}, f, indent=1)
