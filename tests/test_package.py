from refimpl.cli import main
from refimpl.constants import C


def test_constants_hold_the_paper_values():
    # DESIGN.md section 4/5: spot checks of constants the code reads
    assert C["nexus"]["sgn"]["f4_num"] == [315, -420, 378, -180, 35]
    assert C["nexus"]["sgn"]["f4_den"] == 2**7
    assert C["nexus"]["sgn"]["g4_den"] == 2**10
    assert C["freediv"]["quad2"]["a"] == 84.07373758071103
    assert C["aby3"]["fraction_bits"] == 18
    assert C["ckks"]["max_log_qp_128"]["32768"] == 881


def test_cli_unknown_bench_is_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["bench", "nonsense"])
