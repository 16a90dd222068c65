"""The paper constants, read from refimpl/constants.toml (the single source of every constant).

Usage: ``from refimpl.constants import C``; ``C["nexus"]["sgn"]["f4_num"]``. The file ships
inside the package and is read with importlib.resources, so an installed wheel finds it too.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any

CONSTANTS_RESOURCE = "constants.toml"


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """Parse refimpl/constants.toml once."""
    with resources.files("refimpl").joinpath(CONSTANTS_RESOURCE).open("rb") as f:
        return tomllib.load(f)


C = load()
