"""`refimpl reproduce TABLE`: regenerate a table of the papers and print it beside theirs.

One module per table (refimpl/reproduce/<module>.py with `main(argv) -> int`; a table name with a
hyphen lives in the module of the same name with underscores, e.g. nexus-blocks in nexus_blocks.py).
The paper-table commands print the paper's figure, refimpl's and their ratio or difference, with
the settings that differ listed under the table (refimpl/reproduce/paper.py).
"""

from __future__ import annotations

import importlib

TABLES = {
    "accuracy": "freeDiv accuracy table: attention/activation variants with and without distillation",
    "speed": "freeDiv speed table: ABY3 bytes, rounds, time and LAN/WAN estimates per variant",
    "agreement": "ABY3 secure vs plaintext predictions of the shipped models on SST-2 dev",
    "nexus": "NEXUS encrypted BERT: bandwidth, time per block, bootstraps",
    "nexus-blocks": "NEXUS exp and GELU errors against the paper's claims (float64 models, a small ring)",
    "nexus-counts": "NEXUS operation counts (QuickSum, QuickMax, Alg. 5) against the paper's formulas",
    "nexus-placement": "NEXUS bootstrap placement per BERT-base layer (Fig. 4) from the committed plans",
    "nexus-compare": "NEXUS bandwidth and time beside the paper's headline comparisons",
    "freediv-profile": "freeDiv's motivating profile: Softmax and GeLU shares of BERT-base MPC time",
    "distill-gains": "freeDiv accuracy deltas against its own baseline, distillation gains and times",
    "results-index": "results/INDEX.md: every result file, its command and the docs citing it",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in TABLES:
        print("usage: refimpl reproduce TABLE [options]\n\ntables:")
        for k, v in TABLES.items():
            print(f"  {k:16s} {v}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(f"refimpl.reproduce.{argv[0].replace('-', '_')}").main(argv[1:]) or 0
