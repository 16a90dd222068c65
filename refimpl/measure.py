"""Wall time and peak memory, measured one way everywhere (ours: tooling, not a paper's method).

Peak memory is the kernel's resident high-water mark of this process (VmHWM). ``getrusage``'s
ru_maxrss is wrong for a child process: after fork + exec it keeps the parent's peak. VmHWM
belongs to the process's current address space, and ``PeakMemory`` resets it at the start of a
measurement (``/proc/self/clear_refs``), so a forked worker measures its own work, not the
pages it inherited.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (VmHWM; ru_maxrss where /proc is missing)."""
    kib = _status_kib("VmHWM")
    if kib is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kib / 1024


def current_rss_mib() -> float:
    """This process's resident memory now, in MiB (VmRSS)."""
    kib = _status_kib("VmRSS")
    return 0.0 if kib is None else kib / 1024


def reset_peak() -> bool:
    """Reset the high-water mark to the current RSS (Linux clear_refs 5); False if not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """``with PeakMemory() as m: ...`` then ``m.peak_mib`` (peak RSS during the block, MiB)."""

    def __enter__(self) -> "PeakMemory":
        self.reset = reset_peak()
        self.start_mib = current_rss_mib()
        self.peak_mib = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.peak_mib = peak_rss_mib()


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds`` (wall time, perf_counter)."""

    def __enter__(self) -> "Timer":
        self._t0 = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0

