"""What every paper-table command shares: a row of (paper, refimpl, ratio), its text rendering and JSON.

A paper-table command builds a `PaperTable`: rows of a quantity, the paper's figure, refimpl's
figure and their ratio (refimpl / paper) or difference (refimpl - paper), then the settings in
which refimpl's figure differs from the paper's, listed under the table. `render` prints it as
Markdown; `document` is the JSON written with --json FILE (`add_json`, `emit`). Result files are read relative to
the repository (`repo_path`), never to the working directory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from refimpl.cli import common
from refimpl.experiments import repo_path


@dataclass
class Row:
    """One quantity: the paper's figure, refimpl's, and how they compare ("ratio", "diff" or "none")."""

    quantity: str
    paper: float | str | None
    refimpl: float | str | None
    compare: str = "ratio"
    unit: str = ""
    note: str = ""

    def comparison(self) -> float | None:
        """refimpl / paper ("ratio") or refimpl - paper ("diff"); None when either side is not a number."""
        if not (isinstance(self.paper, (int, float)) and isinstance(self.refimpl, (int, float))):
            return None
        if self.compare == "ratio":
            return self.refimpl / self.paper if self.paper else None
        if self.compare == "diff":
            return self.refimpl - self.paper
        return None

    def as_dict(self) -> dict:
        return {"quantity": self.quantity, "paper": self.paper, "refimpl": self.refimpl, "unit": self.unit,
                "compare": self.compare, "value": self.comparison(), "note": self.note}


@dataclass
class PaperTable:
    """A titled table of rows, the paper's source, the setting differences and free-form sections."""

    name: str
    title: str
    source: str
    rows: list[Row] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)  # further text blocks printed under the table

    def document(self, command: str) -> dict:
        return {"table": self.name, "title": self.title, "source": self.source, "command": command,
                "rows": [r.as_dict() for r in self.rows], "setting_differences": self.differences, **self.extra}


def fmt(v) -> str:
    """A number in a short readable form (3 significant digits, scientific below 1e-3 or above 1e6)."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) and abs(v) < 10**7:
        return f"{v:,}"
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if abs(v) < 1e-3 or abs(v) >= 1e7:
        return f"{v:.2e}"
    if abs(v) >= 100:
        return f"{v:,.1f}"
    return f"{v:.3g}"


def render(t: PaperTable) -> str:
    """The table as Markdown: quantity | paper | refimpl | refimpl vs paper | note; differences below."""
    lines = [f"## {t.title}", "", f"paper: {t.source}", "",
             "| quantity | paper | refimpl | refimpl vs paper | note |", "|---|---:|---:|---:|---|"]
    for r in t.rows:
        c = r.comparison()
        cs = "-" if c is None else (f"{c:.3g}x" if r.compare == "ratio" else f"{c:+.3g}")
        def cell(v) -> str:
            return fmt(v) + (f" {r.unit}" if r.unit and isinstance(v, (int, float)) else "")

        lines.append(f"| {r.quantity} | {cell(r.paper)} | {cell(r.refimpl)} | {cs} | {r.note} |")
    for s in t.sections:
        lines += ["", s]
    if t.differences:
        lines += ["", "Settings that differ from the paper's:"]
        lines += [f"- {d}" for d in t.differences]
    return "\n".join(lines)


def add_json(ap) -> None:
    """The option every paper table has: --json FILE (refimpl.cli.common.add_json)."""
    common.add_json(ap, help="also write the table as JSON here")


def emit(t: PaperTable, args) -> int:
    """Print the table; write its JSON document (with the command as typed) when --json is given. Returns 0."""
    print(render(t))
    if args.json:
        argv = getattr(args, "argv", None) or ["reproduce", t.name]
        p = Path(args.json)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(t.document("refimpl " + " ".join(argv)), indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def load_result(relative: str) -> dict:
    """A committed result file of the repository (e.g. "results/nexus/nexus_bertbase_128.json")."""
    return json.loads(repo_path(relative).read_text())


__all__ = ["Row", "PaperTable", "fmt", "render", "add_json", "emit", "load_result", "repo_path"]
