"""Where the spec checker looks: the package it imports and the checkout it reads.

The spec tables (spec/*.md) and the tests (tests/) belong to a checkout of the repository;
the code they cite is the `refimpl` package that Python imports (installed or not).
`refimpl spec --repo DIR` points the checker at another checkout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import refimpl

PACKAGE_DIR = Path(refimpl.__file__).resolve().parent


def default_repo() -> Path:
    """The checkout holding the imported package, else the working directory."""
    here = PACKAGE_DIR.parent
    return here if (here / "spec").is_dir() else Path.cwd().resolve()


@dataclass
class Where:
    """The checkout being checked (spec/ and tests/ below it)."""

    root: Path

    @property
    def spec_dir(self) -> Path:
        return self.root / "spec"

    @property
    def tests_dir(self) -> Path:
        return self.root / "tests"


WHERE = Where(default_repo())
