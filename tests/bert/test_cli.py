"""The BERT commands (refimpl.cli.bert): choices and defaults that mirror the library, model names."""

from __future__ import annotations

import pytest

from refimpl.bert import distill, freediv, glue, shipped
from refimpl.cli import bert as cli
from refimpl.cli import main


def test_the_command_constants_are_the_librarys():
    """The parsers keep `refimpl --help` instant by not importing the library: their copies must agree."""
    assert cli.TASKS == tuple(glue.TASKS)
    assert (cli.STAGE1_LR, cli.STAGE2_LR) == (distill.STAGE1_LR, distill.STAGE2_LR)
    assert cli.STAGE1_TARGETS == tuple(distill.STAGE1_TARGETS)
    assert cli.FREEDIV_KINDS == freediv.KINDS


def test_a_shipped_name_is_a_model_and_an_unknown_one_fails_in_one_line(tmp_path, capsys):
    for name in shipped.NAMES:
        if shipped.available(name):
            assert shipped.resolve(name) == shipped.model_dir(name)
    assert shipped.resolve(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="neither a model directory nor a shipped model"):
        shipped.resolve(tmp_path / "nothing")
    assert main(["eval", "no-such-model", "--glue-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("refimpl eval: error: model 'no-such-model'") and err.count("\n") == 1
