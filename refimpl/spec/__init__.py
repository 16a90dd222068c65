"""`refimpl spec`: every spec ID with its paper reference, the code and the tests.

Reads the requirement tables of spec/*.md (a Markdown table whose header has an `ID`, a
`code` and a `test(s)` column) and resolves every reference mechanically:

- code: each backticked token of the code cell is a path (`ring/ntt.py`, `refimpl/bench/aby3.py`,
  `ring/rns.py::mod_down`), a module (`arith`), a dotted symbol (`shares.share_input`,
  `Bootstrapper.coeffs_to_slots/slots_to_coeffs`, `matmul.alg6_*`) or a bare name that
  continues the previous token's module (`add_key_layer` after `matmul.alg6_*`). Modules are
  looked up in refimpl/<spec name>/ first, then in all of refimpl/; symbols are imported and
  fetched with getattr. Call arguments (`exp_neg(order=3)`) are ignored.
- tests: `file.py::test_name`; `::test_name` and bare `test_name` continue the previous file
  of the cell (else the unique test of that name, preferring tests/<spec name>/); a bare
  `test_file.py` means every test in that file; the cell `same` repeats the row above.
  Other tokens (fixtures, data files) are not test references.

The counting rule (a test counts for an ID only if it exercises the behaviour the row states,
not because it carries the tag), checked mechanically:

1. the test function exists (ast of the test file);
2. its body checks something: an `assert`, `pytest.raises`/`pytest.warns`, an `assert_*` call
   (np.testing), directly or through a helper function of the same test file;
3. it reaches the row's code: statically, one of the code's names (the symbol, or a name defined
   by a cited module) occurs in the test, the same-file helpers it calls or the fixtures it
   takes; with `--run`, the test is run under pytest with a profiler and must pass and execute
   a function of the cited code (a test that runs the code in a subprocess, e.g. an example
   script, must pass; its reach stays the static one, which the report says).

An ID with no counting test is untested; `refimpl spec` exits 1 if any ID is untested, any
reference does not resolve, or no ID is found at all.
"""

from __future__ import annotations

from refimpl.spec.check import check, run_tests
from refimpl.spec.code import CodeRef, resolve_code
from refimpl.spec.paths import WHERE, Where
from refimpl.spec.report import as_json, render, summary
from refimpl.spec.tables import Row, SpecError, parse_spec, split_cells
from refimpl.spec.testrefs import TestIndex, TestRef, resolve_tests

__all__ = ["CodeRef", "Row", "SpecError", "TestIndex", "TestRef", "WHERE", "Where", "as_json", "check",
           "parse_spec", "render", "split_cells", "resolve_code", "resolve_tests", "run_tests", "summary"]
