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


def test_ship_builds_the_models_then_their_nexus_ranges(tmp_path, monkeypatch):
    """`refimpl ship` calibrates each built model's NEXUS ranges on <glue>/SST-2/train.tsv (bert imports no
    nexus, so the command joins the two), and stops at a failed build."""
    from refimpl.bert import shipped
    from refimpl.cli import nexus
    from refimpl.reproduce import ship

    calls, built = [], []
    monkeypatch.setattr(ship, "build", lambda args, argv: built.append((args.out, args.seed, argv)) or 0)
    monkeypatch.setattr(nexus, "calibrate", lambda model_dir, tsv_path: calls.append((model_dir, tsv_path)) or 0)
    argv = ["ship", "--glue-dir", str(tmp_path), "--out", str(tmp_path / "m"), "--seed", "1"]
    assert main(argv) == 0
    assert built == [(str(tmp_path / "m"), 1, argv[1:])]
    assert calls == [(str(tmp_path / "m" / n), str(tmp_path / "SST-2" / "train.tsv")) for n in shipped.NAMES]
    monkeypatch.setattr(ship, "build", lambda args, argv: 3)
    calls.clear()
    assert main(["ship", "--glue-dir", str(tmp_path)]) == 3 and calls == []
