import numpy as np

from refimpl import demo


def test_demo_runs(capsys):
    """The whole demo on its quick settings: every step prints its agreement and the summary."""
    assert demo.main(quick=True) == 0
    out = capsys.readouterr().out
    assert out.count("agrees with plaintext 1/1") == 2  # ABY3: student and baseline
    assert "INSECURE" in out  # the quick NEXUS run is on a toy ring and says so
    summary = out[out.index("[4] summary"):]
    assert summary.count("1/1") == 3


def test_demo_steps_on_the_shipped_models():
    """The demo's plaintext and ABY3 steps: secure predictions equal plaintext ones on both
    shipped models; the 2Quad-freeDiv + Quad student sends fewer bytes in fewer rounds."""
    plain = demo.plaintext_step(["a gripping film"])
    assert not isinstance(plain, str), plain
    rows = demo.aby3_step(plain, ["a gripping film"])
    for name in (demo.TEACHER, demo.STUDENT):
        r = rows[name][0]
        assert r["agree"] and r["max_err"] < 0.05
        np.testing.assert_allclose(r["plain"], plain[name]["logits"][0])
    s, t = rows[demo.STUDENT][0], rows[demo.TEACHER][0]
    assert s["bytes"] < t["bytes"] / 2 and s["rounds"] < t["rounds"]
