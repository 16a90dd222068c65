"""Peak memory, measured one way everywhere (ours: tooling, not a paper's method).

Peak memory is the kernel's resident high-water mark of this process (VmHWM), read at the end of
a measurement. ``getrusage``'s ru_maxrss is wrong for a child process: after fork + exec it keeps
the parent's peak, while VmHWM belongs to the process's current address space. So a measurement
that needs its own peak runs in a fresh process (e.g. ``refimpl.bench.bootjob``), and the
experiments report the peak of the process that ran them. Wall time is ``time.perf_counter``.
`reset_peak` starts a new high-water mark (Linux: clear_refs 5), for the peak of one stage of a long run.
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")


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



def reset_peak() -> bool:
    """Reset this process's VmHWM to its current resident size (the peak of what follows); False where
    the kernel does not allow it (the peak then stays the process's)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
