"""`refimpl demo`: runs what is built so far and says what is not."""

from __future__ import annotations


def main(sentence: str | None = None, quick: bool = False) -> int:
    print("refimpl demo: the CKKS core is being built; nothing to run yet.")
    return 0
