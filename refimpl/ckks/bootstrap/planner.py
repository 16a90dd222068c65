"""Bootstrapping placement: the fewest bootstraps so that no block runs out of levels.

A circuit is a sequence of blocks, each consuming `cost` levels; a block may declare split
points (`parts`: the costs of its pieces, between which a bootstrap is allowed, e.g. the rounds
of QuickMax). Given the level of the input and the level a bootstrap returns, the greedy rule
"bootstrap only when the next piece does not fit" is optimal for a chain: any plan must refresh
somewhere inside every stretch the greedy plan refreshes at the end of, and refreshing later
never leaves fewer levels.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LevelExhaustedError


@dataclass(frozen=True)
class Block:
    """A piece of a circuit: `cost` levels; `parts` (summing to cost) where it may be split."""

    name: str
    cost: int
    parts: tuple[int, ...] | None = None

    def pieces(self) -> list[tuple[str, int]]:
        if not self.parts:
            return [(self.name, self.cost)]
        if sum(self.parts) != self.cost:
            raise ValueError(f"block {self.name}: parts {self.parts} do not sum to its cost {self.cost}")
        return [(f"{self.name}[{i}]", c) for i, c in enumerate(self.parts)]


@dataclass(frozen=True)
class Step:
    name: str
    cost: int
    bootstrap_before: bool
    level_in: int
    level_out: int


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    bootstrap_output_level: int

    @property
    def bootstraps(self) -> int:
        return sum(s.bootstrap_before for s in self.steps)

    def table(self) -> str:
        rows = [f"{'block':<24s} {'boot?':>5s} {'level in':>8s} {'cost':>4s} {'level out':>9s}"]
        for s in self.steps:
            rows.append(f"{s.name:<24s} {'yes' if s.bootstrap_before else '':>5s} {s.level_in:>8d} {s.cost:>4d} {s.level_out:>9d}")
        rows.append(f"bootstraps: {self.bootstraps} (each returns level {self.bootstrap_output_level})")
        return "\n".join(rows)


def place_bootstraps(blocks: list[Block], start_level: int, bootstrap_level: int) -> Plan:
    """Greedy placement: bootstrap right before the first piece that would go below level 0."""
    steps = []
    level = start_level
    for b in blocks:
        for name, cost in b.pieces():
            if cost > bootstrap_level:
                raise LevelExhaustedError(
                    f"{name} needs {cost} levels but a bootstrap returns only {bootstrap_level}: "
                    "give the block split points (parts) or use parameters with more levels after bootstrapping"
                )
            boot = level < cost
            if boot:
                level = bootstrap_level
            steps.append(Step(name, cost, boot, level, level - cost))
            level -= cost
    return Plan(tuple(steps), bootstrap_level)
