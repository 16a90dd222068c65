"""`refimpl bench nexus`: the NEXUS blocks (refimpl.experiments.nexus_blocks) as JSON lines."""

from __future__ import annotations

from ..experiments import nexus_blocks
from .common import Report, set_threads, thread_modes


def main(quick: bool = False, json_path: str | None = None, threads: str | None = None) -> int:
    report = Report("nexus", json_path)
    for mode in thread_modes(threads or "1"):
        set_threads(mode)
        nexus_blocks.run(quick=quick, emit=lambda r, m=mode: report.emit({**r, "threads": m}))
    report.close({"quick": quick})
    return 0
