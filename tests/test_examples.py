"""Every script in examples/ runs (fast settings) and reports what it claims."""

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    return runpy.run_path(str(EXAMPLES / name), run_name="example")


def test_ckks_basics(capsys):
    prec = load("ckks_basics.py")["main"]("128-2^13")
    assert prec["min"] >= 40 - (13 + 8)  # the bound of tests/ckks/test_evaluator.py
    assert "128-bit" in capsys.readouterr().out


def test_bootstrapping(capsys):
    prec = load("bootstrapping.py")["main"]("toy-2^10")
    assert prec["min"] >= 20
    assert "level=0/" in capsys.readouterr().out
