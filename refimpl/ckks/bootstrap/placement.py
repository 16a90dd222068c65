"""Bootstrap placement on a chain of pieces: where to refresh so that no piece runs out of levels.

Two placements (a piece consumes `cost` levels and needs `need` levels on entry):

- `place`: a dynamic program over a chain of `Piece`s with joins (a stream meeting an earlier
  one, e.g. the residual) and widths (ciphertexts alive): the fewest ciphertexts refreshed, then
  the fewest refresh points; with `limb_s` and `boot_s` the least derived time. `simulate`
  replays one set of positions (the tests' brute-force oracle tries every set with it).
- `greedy`: "bootstrap only when the next piece does not fit" on a chain of `Block`s without
  joins or widths. It gives the fewest bootstrap points for such a chain: any plan must refresh
  somewhere inside every stretch the greedy plan refreshes at the end of, and refreshing later
  never leaves fewer levels.

The objectives and the dynamic program are ours (refimpl's), not a paper's. The chain the
encrypted BERT of NEXUS (Zhang et al., NDSS 2025, §3-4) runs is built by refimpl.nexus.bert.chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LevelExhaustedError

UNSCALED_BOOT_BOUND = 4.0  # a refresh at level 0 (no level for the scaling) only for |values| <= 4:
# EvalMod's relative error (2 pi Delta x / q_0)^2 / 6 is 1e-4 at |x| = 16, 6e-6 at 4 (Delta / q_0 = 2^-12);
# exceptions: the running maximum of QuickMax (Softmax subtracts it: an error of 1e-3 B only shifts the row)
# and a - max before exp (the error is cubic in |a - max|, where exp is below 1e-8) or before Argmax's Sgn


@dataclass(frozen=True)
class Piece:
    """One step of the chain: `cost` levels on `width` ciphertexts; needs `need` levels on entry.

    join = (which, piece, offset): before the piece the stream meets another one whose level is
    the entry ("in") or exit ("out") level of `piece` minus offset (an addition: the result has
    the lower level; equal levels cost one level to match the scales); a bootstrap before the
    piece refreshes the joined value. bootable=False: no refresh allowed (a product of two streams)."""

    name: str
    cost: int
    width: int
    need: int | None = None
    join: tuple[str, str, int] | None = None
    bootable: bool = True
    bound: float = 1.0  # max |value| of the stream entering the piece (pre-bootstrap scaling)
    product_join: bool = False  # the join is a product (levels need not match scales: no extra level)
    coarse_ok: bool = False  # an unscaled refresh (EvalMod error ~1e-3 relative) is harmless: a running maximum
    bounds: tuple[float, ...] | None = None  # per ciphertext, when they hold different quantities (default: bound)
    precise: bool = False  # a refresh here bootstraps twice (META-BTS, Bae et al. CCS 2022): ~log2(bound) more bits

    def boots_per_ciphertext(self) -> int:
        return 2 if self.precise else 1



def simulate(pieces: list[Piece], boots: set[int], start: int, top: int):
    """Levels along the chain for a set of bootstrap positions; (rows, index of the first failure or None)."""
    lin, lout, rows = {}, {}, []
    level = start
    for i, pc in enumerate(pieces):
        matched = False
        if pc.join:
            which, ref, off = pc.join
            other = (lin if which == "in" else lout)[ref] - off
            if other == level and not pc.product_join:
                level, matched = level - 1, True  # equal levels: one level to match the scales
            else:
                level = min(level, other)
        boot = i in boots
        if boot:
            level = top
        need = pc.cost if pc.need is None else pc.need
        if level < need:
            return rows, i
        lin[pc.name] = level
        rows.append({"block": pc.name, "bootstrap": boot, "level_in": level, "cost": pc.cost,
                     "level_out": level - pc.cost, "ciphertexts": pc.width,
                     "bootstraps": pc.width * pc.boots_per_ciphertext() if boot else 0, "scale_match_level": matched})
        level -= pc.cost
        lout[pc.name] = level
    return rows, None


def place(pieces: list[Piece], start: int, top: int, *, limb_s: dict[str, float] | None = None,
          boot_s: float | None = None, unscaled_bound: float = UNSCALED_BOOT_BOUND) -> list[dict]:
    """Bootstrap positions with the fewest ciphertexts refreshed (then the fewest refresh points).

    Dynamic programming over the chain: the state after a piece is its level and the levels of
    the streams still waiting to be joined (the residual, the scores before QuickMax, ...); at
    each bootable piece one may refresh its `width` ciphertexts. Exact for this cost, and never
    worse than `greedy` (refresh right before the piece that does not fit), which ignores
    widths: e.g. it refreshes the 4x wider FFN stream where refreshing the hidden stream one
    piece earlier serves as well. A refresh where no level is left to scale the values into
    [-1, 1] is allowed only for pieces with `bound` <= `unscaled_bound` or `coarse_ok`.

    Time-weighted (ours; both keywords): minimise the derived time instead, boot_s seconds per
    refreshed ciphertext plus limb_s[piece] x (level + 1) per piece (a piece's time taken as
    proportional to the limbs of the level it runs at; pieces not named cost nothing), counted in
    whole microseconds so that equal times tie exactly, then the two counts above. The state is
    the same, so the program stays exact for this cost."""
    if (limb_s is None) != (boot_s is None):
        raise ValueError("a time-weighted placement needs both limb_s (seconds per limb of each piece) and boot_s "
                         "(seconds per refreshed ciphertext)")
    if boot_s is not None:
        bad = {k: v for k, v in limb_s.items() if not v >= 0}  # NaN fails too
        if not boot_s >= 0 or bad:
            raise ValueError(f"seconds must be non-negative numbers, got boot_s = {boot_s}"
                             + (f" and limb_s {bad}" if bad else ""))
        unknown = sorted(set(limb_s) - {pc.name for pc in pieces})
        if unknown:
            raise ValueError(f"limb_s names no piece of the chain: {unknown[:4]} (keys are piece names, e.g. "
                             f"{pieces[0].name!r})")
    weigh = boot_s is not None
    us = 1e6  # seconds -> integer microseconds
    last_use: dict = {}
    for j, pc in enumerate(pieces):
        if pc.join:
            key = (pc.join[0], pc.join[1])
            last_use[key] = max(last_use.get(key, -1), j)
    states = {(start, ()): ((0, 0, 0), None)}  # state -> ((microseconds, ciphertexts refreshed, points), back)
    history = []
    for i, pc in enumerate(pieces):
        new: dict = {}
        need = pc.cost if pc.need is None else pc.need
        for key, ((secs, cost, npts), _) in states.items():
            level, refs = key
            live = dict(refs)
            if pc.join:
                which, ref, off = pc.join
                other = live[(which, ref)] - off
                level = level - 1 if other == level and not pc.product_join else min(level, other)
            for boot in ((False, True) if pc.bootable else (False,)):
                if boot and pc.bound > unscaled_bound and level < 1 and not pc.coarse_ok:
                    continue  # large values are scaled down before a refresh: that takes a level
                lvl = top if boot else level
                if lvl < need:
                    continue
                nxt = dict(live)
                if last_use.get(("in", pc.name), -1) > i:
                    nxt[("in", pc.name)] = lvl
                if last_use.get(("out", pc.name), -1) > i:
                    nxt[("out", pc.name)] = lvl - pc.cost
                nxt = {k: v for k, v in nxt.items() if last_use[k] > i}
                k2 = (lvl - pc.cost, tuple(sorted(nxt.items())))
                w = pc.width * pc.boots_per_ciphertext()
                val = (secs + (round(us * (boot * w * boot_s + limb_s.get(pc.name, 0.0) * (lvl + 1)))
                               if weigh else 0), cost + (w if boot else 0), npts + boot)
                if k2 not in new or val < new[k2][0]:
                    new[k2] = (val, (key, boot))
        if not new:
            raise ValueError(f"no bootstrap placement fits piece {pc.name} (needs {need} levels, bootstrapping "
                             f"returns level {top}): use parameters with more levels after bootstrapping")
        history.append(new)
        states = new
    key = min(states, key=lambda k: states[k][0])
    boots = set()
    for i in range(len(pieces) - 1, -1, -1):
        prev, boot = history[i][key][1]
        if boot:
            boots.add(i)
        key = prev
    rows, fail = simulate(pieces, boots, start, top)
    if fail is not None:
        raise RuntimeError(f"internal: the placement fails at {pieces[fail].name}")
    return rows



def plan_table(rows: list[dict]) -> str:
    """The plan as a fixed-width table (like the paper's placement figure), with totals."""
    out = [f"{'block':<22s} {'boot':>4s} {'cts':>4s} {'level in':>8s} {'cost':>4s} {'level out':>9s}"]
    for r in rows:
        out.append(f"{r['block']:<22s} {'yes' if r['bootstrap'] else '':>4s} {r['ciphertexts']:>4d} "
                   f"{r['level_in']:>8d} {r['cost']:>4d} {r['level_out']:>9d}")
    out.append(f"bootstrap points: {sum(r['bootstrap'] for r in rows)}, ciphertexts bootstrapped: "
               f"{sum(r['bootstraps'] for r in rows)}, levels used: {sum(r['cost'] for r in rows)}")
    return "\n".join(out)


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


def greedy(blocks: list[Block], start_level: int, bootstrap_level: int) -> Plan:
    """Greedy placement: bootstrap right before the first piece that would go below level 0.

    The fewest bootstrap points on a chain without joins and widths (see the module docstring);
    the baseline `place` is compared with."""
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
