"""The paper constants, read from spec/constants.toml (the single source of every constant).

Usage: ``from refimpl.constants import C``; ``C["nexus"]["sgn"]["f4_num"]``.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

SPEC_DIR = Path(__file__).resolve().parent.parent / "spec"
CONSTANTS_FILE = SPEC_DIR / "constants.toml"


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """Parse spec/constants.toml once."""
    if not CONSTANTS_FILE.exists():
        raise FileNotFoundError(
            f"{CONSTANTS_FILE} not found: install refimpl from its source tree "
            "with `pip install -e .` so that spec/ stays beside the package"
        )
    with CONSTANTS_FILE.open("rb") as f:
        return tomllib.load(f)


C = load()
