"""Progress reports from the library (ours): one callback convention, no printing.

Library functions that can take more than a few seconds (key generation, each bootstrap, the
encrypted forward) take an optional `progress` argument, a callable

    progress(what: str, done: int, total: int) -> None

called at step boundaries: `what` names the task and may carry a detail after ": " (e.g.
"bootstrap: CoeffsToSlots"); `done` of `total` steps are finished; the last call of a task has
done == total. The library never prints: the top layer (refimpl.cli.progress) draws the calls as
progress bars on stderr, a test can record them, and None (the default) reports nothing.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str, int, int], None]


def no_progress(what: str, done: int, total: int) -> None:
    """The callback that reports nothing (what `progress=None` stands for)."""


def or_silent(progress: Progress | None) -> Progress:
    """`progress` itself, or the callback that reports nothing."""
    return progress if progress is not None else no_progress


__all__ = ["Progress", "no_progress", "or_silent"]
