"""`refimpl reproduce TABLE`: regenerate a table of the papers and print it beside theirs.

One module per table (refimpl/reproduce/<table>.py with `main(argv) -> int`).
"""

from __future__ import annotations

import importlib

from refimpl.errors import UserError

TABLES = {
    "accuracy": "freeDiv accuracy table: attention/activation variants with and without distillation",
    "speed": "freeDiv speed table: ABY3 bytes, rounds, time and LAN/WAN estimates per variant",
    "agreement": "ABY3 secure vs plaintext predictions of the shipped models on SST-2 dev",
    "nexus": "NEXUS encrypted BERT: bandwidth, time per block, bootstraps",
    "results-index": "results/INDEX.md: every result file, its command and the docs citing it",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] not in TABLES and argv[0] not in ("-h", "--help"):
        raise UserError(f"reproduce: unknown table {argv[0]!r}; tables: {', '.join(TABLES)}")
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: refimpl reproduce TABLE [options]\n\ntables:")
        for k, v in TABLES.items():
            print(f"  {k:10s} {v}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(f"refimpl.reproduce.{argv[0].replace('-', '_')}").main(argv[1:]) or 0
