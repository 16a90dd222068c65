"""`refimpl reproduce TABLE`: regenerate a table of the papers and print it beside theirs.

One module per table in refimpl/reproduce/ with ``add_arguments(parser)`` and ``run(args) -> int``.
A table's module is imported only when that table is asked for (its options included), so that
``refimpl --help`` and ``refimpl reproduce --help`` stay instant.
"""

from __future__ import annotations

import argparse
import importlib

from refimpl.cli.common import Parser

# table -> help; its module is refimpl.reproduce.<table, "-" read as "_"> with add_arguments and run
TABLES = {
    "accuracy": "freeDiv accuracy table: attention/activation variants with and without distillation",
    "speed": "freeDiv speed table: ABY3 bytes, rounds, time and LAN/WAN estimates per variant",
    "agreement": "ABY3 secure vs plaintext predictions of the shipped models on SST-2 dev",
    "nexus": "NEXUS encrypted BERT: bandwidth, time per block, bootstraps",
    "nexus-bertbase": "NEXUS BERT-base at n = 128: bootstrap plan, timed blocks, derived time",
    "nexus-blocks": "NEXUS exp and GELU errors against the paper's claims (float64 models, a small ring)",
    "nexus-counts": "NEXUS operation counts (QuickSum, QuickMax, Alg. 5) against the paper's formulas",
    "nexus-placement": "NEXUS bootstrap placement per BERT-base layer (Fig. 4) from the committed plans",
    "nexus-compare": "NEXUS bandwidth and time beside the paper's headline comparisons",
    "freediv-profile": "freeDiv's motivating profile: Softmax and GeLU shares of BERT-base MPC time",
    "distill-gains": "freeDiv accuracy deltas against its own baseline, distillation gains and times",
    "results-index": "results/INDEX.md: every result file, its command and the docs citing it",
}
# the tables that share a module: table -> (module, function adding its options, function running it)
SHARED_MODULE = {"nexus-bertbase": ("nexus", "add_bertbase_arguments", "run_bertbase")}


def entry_point(table: str) -> tuple[str, str, str]:
    """(module in refimpl.reproduce, function adding the table's options, function running it)."""
    return SHARED_MODULE.get(table, (table.replace("-", "_"), "add_arguments", "run"))


class TableParser(Parser):
    """A table's parser: imports the table's module and adds its options when it is first used (defaults shown
    in its help as everywhere, refimpl.cli.common.Parser)."""

    def __init__(self, *a, table: str = "", **kw):
        super().__init__(*a, **kw)
        self.table = table
        self.loaded = False

    def parse_known_args(self, args=None, namespace=None):
        if not self.loaded:
            self.loaded = True
            module, add, run = entry_point(self.table)
            mod = importlib.import_module(f"refimpl.reproduce.{module}")  # lazy: keeps `refimpl --help` instant
            getattr(mod, add)(self)
            self.set_defaults(func=getattr(mod, run))
        return super().parse_known_args(args, namespace)


def register(sub) -> None:
    rp = sub.add_parser("reproduce", help="regenerate a table of the papers beside theirs",
                        description=__doc__.splitlines()[0])
    tables = rp.add_subparsers(dest="table", required=True, metavar="TABLE", parser_class=TableParser)
    for name, help_ in TABLES.items():
        tables.add_parser(name, help=help_, description=help_, table=name,
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
