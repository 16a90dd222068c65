"""`refimpl ship` until its group module takes it: the shipped models, then their NEXUS ranges."""

from __future__ import annotations

import argparse
from pathlib import Path

from refimpl.bert import shipped
from refimpl.cli import nexus


def ship(argv: list[str]) -> int:
    """refimpl ship: the shipped models (refimpl.bert.shipped), then the model owner's NEXUS ranges of
    each (`refimpl nexus calibrate` on the GLUE SST-2 training set). Here, because bert imports no nexus."""
    rc = shipped.main(argv)
    if rc:
        return rc
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--glue-dir", required=True)
    p.add_argument("--out", default=str(shipped.MODELS_DIR))
    a, _ = p.parse_known_args(argv)
    tsv = str(Path(a.glue_dir) / "SST-2" / "train.tsv")
    for name in shipped.NAMES:
        rc = nexus.calibrate(str(Path(a.out) / name), tsv)
        if rc:
            return rc
    return 0
