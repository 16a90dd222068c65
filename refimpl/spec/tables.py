"""The requirement tables of spec/*.md: rows with an ID, a code and a test(s) column."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from refimpl.spec.code import CodeRef
from refimpl.spec.testrefs import TestRef


class SpecError(ValueError):
    """A spec file that cannot be read as requirement tables."""




@dataclass
class Row:
    """One requirement row: its ID and the raw cells."""

    spec: str            # spec file stem: "ckks", "nexus", ...
    id: str
    requirement: str
    reference: str       # the source/reference column, else the section heading
    code_cell: str
    tests_cell: str
    line: int
    code: list[CodeRef] = field(default_factory=list)
    tests: list[TestRef] = field(default_factory=list)
    tagged: list[str] = field(default_factory=list)   # tests whose docstring names this ID

    @property
    def tagged_not_cited(self) -> list[str]:
        cited = {f.nodeid for t in self.tests for f in t.funcs}
        return [n for n in self.tagged if n not in cited]

    @property
    def counting(self) -> list[TestRef]:
        return [t for t in self.tests if t.counts]

    @property
    def tested(self) -> bool:
        return bool(self.counting)

    @property
    def errors(self) -> list[str]:
        errs = [f"code `{c.text}`: {c.error}" for c in self.code if c.error]
        errs += [f"test `{t.text}`: {t.error}" for t in self.tests if t.error]
        if not self.code:
            errs.append("no code reference")
        return errs


def split_cells(line: str) -> list[str]:
    """Cells of a Markdown table line; a `|` inside backticks or escaped as \\| stays in its cell."""
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    cells, cur, tick = [], [], False
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] == "|":
            cur.append("|")
            i += 2
            continue
        if ch == "`":
            tick = not tick
        if ch == "|" and not tick:
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    cells.append("".join(cur).strip())
    return cells


def _columns(header: list[str]) -> dict[str, int] | None:
    """Column indices of a requirement table, or None if the header is not one."""
    low = [h.strip().lower() for h in header]
    if not low or low[0] != "id":
        return None
    cols = {"id": 0}
    for i, h in enumerate(low):
        if h == "code":
            cols["code"] = i
        elif h in ("test", "tests"):
            cols["tests"] = i
        elif h == "requirement":
            cols["requirement"] = i
        elif h in ("source", "reference", "source/reference", "paper", "paper reference"):
            cols["reference"] = i
    if "code" not in cols or "tests" not in cols:
        return None
    return cols


def parse_spec(path: Path) -> list[Row]:
    """Every requirement row of one spec file, in file order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows: list[Row] = []
    heading = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(
            r"^\s*\|?\s*:?-{3,}", lines[i + 1]
        ):
            cols = _columns(split_cells(line))
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                if cols is not None:
                    cells = split_cells(lines[i])
                    if len(cells) < len(split_cells(line)):
                        raise SpecError(
                            f"{path.name}:{i + 1}: row has {len(cells)} cells, the header "
                            f"{len(split_cells(line))}"
                        )
                    ref = cells[cols["reference"]] if "reference" in cols else ""
                    if ref.lower().rstrip(".") in ("same", "ditto") and rows and rows[-1].spec == path.stem:
                        ref = rows[-1].reference
                    rows.append(Row(
                        spec=path.stem,
                        id=cells[0].strip("` "),
                        requirement=cells[cols["requirement"]] if "requirement" in cols else cells[1],
                        reference=ref or heading,
                        code_cell=cells[cols["code"]],
                        tests_cell=cells[cols["tests"]],
                        line=i + 1,
                    ))
                i += 1
            continue
        i += 1
    return rows
