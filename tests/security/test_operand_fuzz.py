"""NEXUS-SEC-WIRE (operands): every operand of other parameters, scale or constant outside the modulus
and impossible serialized value of tests/security/operand_fuzz.py raises a CKKS error; with the
boundary checks switched off (the weakened configuration) the judge sees silent answers."""

from refimpl.ckks import evaluator as evaluator_module

from .operand_fuzz import run_operand_cases


def test_every_bad_operand_is_refused():
    rows = run_operand_cases()
    assert len(rows) >= 15 and all(r["outcome"] == "clean" for r in rows), [r for r in rows if r["outcome"] != "clean"]


def test_without_the_checks_bad_operands_pass_silently(monkeypatch):
    for name in ("check_constant", "check_key", "check_operand", "check_params", "check_product_scale"):
        monkeypatch.setattr(evaluator_module, name, lambda *a, **k: None)
    rows = run_operand_cases()
    assert sum(r["outcome"] != "clean" for r in rows) >= 3
