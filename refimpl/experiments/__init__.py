"""Experiments of the top layer: timing studies, probes and runners that measure the library.

- nexus_bert: the encrypted BERT on short sentences, encrypted vs plaintext logits
  (`refimpl experiment nexus-bert`);
- bertbase: BERT-base at n = 128 under NEXUS, plan, timed blocks and derived time
  (`refimpl experiment bertbase`, also `refimpl reproduce nexus-bertbase`);
- noise_probe: the encrypted forward with noisy refreshes (`refimpl experiment noise-probe`).

Nothing in the library imports this package. Result paths are anchored to the repository
(`repo_path`) or given on the command line, never relative to the working directory.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def repo_path(relative: str | Path) -> Path:
    """A path of the repository (e.g. "results/x.json"), whatever the working directory."""
    return REPO / relative
