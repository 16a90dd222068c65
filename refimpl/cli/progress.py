"""Progress bars on stderr for the library's progress callbacks (ours; refimpl.progress).

The library reports `progress(what, done, total)` and never prints; the top layer (the CLI, the
demo, reproduce) passes `Bars()` and gets one tqdm bar per task, the part of `what` before ": "
(a detail after it is shown beside the bar). Bars are drawn only when stderr is a terminal (or
REFIMPL_PROGRESS=1) and `refimpl -q` is not given (it sets TQDM_DISABLE); results stay on stdout.
Bars of tasks that run inside others (each bootstrap inside the encrypted forward) stack below
them and vanish when done. This module imports only the standard library at its top.
"""

from __future__ import annotations

import os
import sys


def progress_enabled() -> bool:
    """Progress bars on stderr: not with -q (TQDM_DISABLE), forced by REFIMPL_PROGRESS=1, else when stderr is a terminal."""
    if os.environ.get("TQDM_DISABLE"):
        return False
    if os.environ.get("REFIMPL_PROGRESS") == "1":
        return True
    return sys.stderr.isatty()


def width_options() -> dict:
    """tqdm's size options: follow the terminal, or 100 x 30 on a terminal that reports none
    (a pseudo-terminal without a size, e.g. under `script`: tqdm would draw nothing)."""
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return {"dynamic_ncols": True} if columns > 0 else {"ncols": 100, "nrows": 30}


class Bars:
    """A refimpl.progress callback that draws tqdm bars on stderr; a context manager closing them."""

    def __init__(self, enabled: bool | None = None, prefix: str = ""):
        self.on = progress_enabled() if enabled is None else bool(enabled)
        self.prefix = prefix
        self.bars: dict = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        if not self.on:
            return
        task, _, detail = what.partition(": ")
        bar = self.bars.get(task)
        if bar is None:
            if done >= total:
                return
            from tqdm import tqdm  # lazy: commands that never report progress do not import it

            bar = self.bars[task] = tqdm(total=total, desc=self.prefix + task, file=sys.stderr, leave=False,
                                         postfix=detail or None, mininterval=0.25, **width_options())
        if bar.total != total:
            bar.total = total
        if detail:
            bar.set_postfix_str(detail, refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self.bars[task]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()

    def __enter__(self) -> "Bars":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

