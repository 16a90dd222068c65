"""`refimpl plot`: the figures of the stored results as PNG files into docs/img/ (the `plot` extra)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from refimpl.reproduce import plots  # lazy: keeps `refimpl --help` instant

    for path in plots.make_all(Path(args.results) if args.results else plots.RESULTS,
                               Path(args.out) if args.out else plots.OUT, args.names):
        print(path)
    return 0


def register(sub) -> None:
    p = sub.add_parser("plot", help="figures of the stored results as PNG (needs matplotlib: the plot extra)")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these plots (e.g. accuracy_vs_papers.png; default: all)")
    p.add_argument("--results", default=None, help="the results directory (default: results/ in the repository)")
    p.add_argument("--out", default=None, help="where the PNG files go (default: docs/img/ in the repository)")
    p.set_defaults(func=run)
