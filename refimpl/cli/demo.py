"""`refimpl demo`: the main job, secure inference end to end on embedded defaults."""

from __future__ import annotations

import argparse

from refimpl.cli.common import add_json


def run(args: argparse.Namespace) -> int:
    from refimpl import demo  # lazy: keeps `refimpl --help` instant

    return demo.main(sentence=args.sentence, quick=args.quick, json_path=args.json) or 0


def register(sub) -> None:
    d = sub.add_parser("demo", help="the main job: secure inference end to end on embedded defaults",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--sentence", default=None, help="your own text to classify")
    d.add_argument("--quick", action="store_true", help="smallest settings (used by the tests)")
    add_json(d, help="also write the summary and each step's logits as JSON to this file")
    d.set_defaults(func=run)
