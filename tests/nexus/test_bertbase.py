"""BERT-base at n = 128 under NEXUS (refimpl.experiments.bertbase): block list, counts, plan and the
timed kernels, on the same code path at small insecure rings.

Oracles: independent counts of ciphertexts (n d / (N/2) for a full hidden stream, one score
ciphertext per head); brute force over every set of bootstrap positions (as
test_nexus_bert.test_place_is_optimal) for the plan; numpy float64 for every timed kernel's
decrypted output (the instance that is timed computes the right thing).
"""

import itertools
import json
import math

import numpy as np
import pytest

from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.ckks.bootstrap.placement import UNSCALED_BOOT_BOUND, simulate
from refimpl.cli import main as cli_main
from refimpl.experiments import bertbase as bb
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import packing as pk


def ranges(layers, bound=8.0):
    """Hand-set ranges (NexusModel.get_ranges format): scores within B, variances in [0.5, 4], GELU inputs in [-6, 6]."""
    return {"score_bound": bound, "var": {f"L{i}.ln{j}": (0.5, 4.0) for i in range(layers) for j in (1, 2)},
            "act": (-6.0, 6.0), "absmax": {}}


def small(model, layers=1, **size):
    kw = dict(hidden_size=32, num_attention_heads=4, intermediate_size=128)
    kw.update(size)
    cfg = bb.config(model, layers=layers, **kw)
    return bb.synthetic_model(cfg, ranges(layers))


@pytest.mark.parametrize("model", sorted(bb.MODELS))
def test_bert_base_counts_at_128_bit(model):
    """BERT-base, n = 128, N = 2^16 (the preset's level): 6 hidden, 24 FFN, 6 score ciphertexts,
    equal to ceil(n d / slots) with half of every token window empty, and to one per two heads (rows of 128 keys,
    two per window of 256 slots: refimpl.nexus.bert.packing)."""
    cfg = bb.config(model)
    slots = 2**15
    lay = bb.layout(cfg, 128, slots)
    assert lay.head_rows and (lay.chunk, lay.window) == (128, 256)
    assert lay.chunks(lay.d) == math.ceil(128 * 768 / (slots / 2)) == 6
    assert lay.chunks(lay.intermediate) == math.ceil(128 * 3072 / (slots / 2)) == 24
    assert lay.score_cts == 6 == math.ceil(12 * 128 * 128 / slots)
    with pytest.raises(ValueError, match="use at most (32|64) tokens"):
        nb.input_layout(cfg, 128, slots)  # the default layout keeps rows inside a head
    if model == "softmax-gelu":
        with pytest.raises(ValueError, match="attention rows need"):
            bb.layout(cfg, 256, slots)  # 512 slots of a Softmax row > the 256-slot window


def _unscaled(pieces, rows, boots, top):
    """Whether some refresh has no level left to scale values beyond UNSCALED_BOOT_BOUND (place's rule)."""
    by = {r["block"]: r for r in rows}
    for i in boots:
        pc = pieces[i]
        level = rows[i - 1]["level_out"] if i else top
        if pc.join:
            which, ref, off = pc.join
            other = by[ref]["level_in" if which == "in" else "level_out"] - off
            level = level - 1 if other == level and not pc.product_join else min(level, other)
        if pc.bound > UNSCALED_BOOT_BOUND and level < 1 and not pc.coarse_ok:
            return True
    return False


def _brute(pieces, top):
    best = None
    bootable = [i for i, p in enumerate(pieces) if p.bootable]
    for k in range(len(bootable) + 1):
        for boots in itertools.combinations(bootable, k):
            rows, fail = simulate(pieces, set(boots), top, top)
            if fail is None and not _unscaled(pieces, rows, boots, top):
                cost = sum(r["bootstraps"] for r in rows)
                best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("model,size", [("2quad-freediv-quad", dict(hidden_size=32, num_attention_heads=4)),
                                        ("softmax-gelu", dict(hidden_size=16, num_attention_heads=4))])
def test_blocks_and_plan_against_brute_force(model, size):
    """NEXUS-BERT-PLAN: the block list covers every piece once, levels add up, widths are the
    stream's ciphertexts (two heads per score ciphertext, two FFN chunks per GELU ciphertext, and per Quad and FFN2
    input with the FFN on complex chunk pairs), and the plan
    refreshes as few ciphertexts as brute force finds."""
    p, rc = bootstrap_parameters(2048, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
    n = 16 if model.startswith("2quad") else 4  # rows of n_pad (2 n_pad with Softmax) > dh = 8 (4)
    m = small(model, intermediate_size=4 * size["hidden_size"], **size)
    info = bb.blocks(m, n, (p, rc))
    lay = info["layout"]
    assert lay.head_rows
    rows = info["rows"]
    layer = [r for r in rows if r["block"].startswith("L0.")]
    assert [b["kind"] for b in info["layer_blocks"]][:2] == ["QKV", "Q K^T"]
    assert sum(len(b["pieces"]) for b in info["layer_blocks"]) == len(layer)
    assert sum(b["levels"] for b in info["layer_blocks"]) == sum(r["cost"] for r in layer) == info["per_layer"][0]["levels"]
    for r in layer:
        kind = bb.kind_of(r["block"])
        pairs = -(-lay.chunks(lay.intermediate) // 2)  # Quad's and FFN2's inputs complex chunk pairs (linear_pairs)
        ffn = pairs if m.settings()["ffn_complex"] else lay.chunks(lay.intermediate)
        want = {"Softmax": lay.score_cts, "2Quad-freeDiv": lay.score_cts, "GELU": pairs, "Quad": ffn, "FFN2": ffn}.get(kind)
        widths = pk.quickmax_widths(lay.score_cts, lay.n_pad.bit_length() - 1)  # the packed QuickMax (packing)
        if ".softmax.round" in r["block"]:
            want = widths[int(r["block"].rsplit("round", 1)[1])]
        elif r["block"].endswith(".softmax.spread"):
            want = widths[-1]
        elif r["block"].endswith(".softmax.inverse"):
            want = 1 if pk.packed_sums(m.settings(), lay) else lay.score_cts
        if want is not None:
            assert r["ciphertexts"] == want, r
        if r["block"] == "L0.pv.mask":
            assert r["ciphertexts"] == lay.score_cts == -(-size["num_attention_heads"] // (2 if lay.pair_rows else 1))
    assert info["total"]["ciphertexts_refreshed"] == _brute(info["pieces"], info["top"])
    assert info["total"]["ciphertexts_refreshed"] == sum(pl["ciphertexts_refreshed"] for pl in info["per_layer"]) \
        + info["head"]["ciphertexts_refreshed"]


def test_widest_ranges_and_errors():
    src = {"score_bound": 16.0, "act": (-3.0, 4.0),
           "var": {"L0.ln1": (1.0, 2.0), "L1.ln1": (0.5, 1.5), "L0.ln2": (0.1, 9.0), "L1.ln2": (0.2, 3.0)},
           "absmax": {"L0.x": 2.0, "L1.x": 5.0, "L2.x": 1.0, "L0.h1": 3.0, "L1.h1": 1.0}}
    r = bb.widest_ranges(src, 3)
    assert r["var"]["L2.ln1"] == (0.5, 2.0) and r["var"]["L0.ln2"] == (0.1, 9.0)
    assert r["absmax"]["L3.x"] == 5.0 and r["absmax"]["L2.h1"] == 3.0 and r["score_bound"] == 16.0
    with pytest.raises(ValueError, match="unknown model"):
        bb.config("relu")
    with pytest.raises(ValueError, match="no block kind"):
        bb.kind_of("L0.mystery")


def test_derive_adds_blocks_and_bootstraps():
    info = {"per_layer": [{"ciphertexts_refreshed": 3}, {"ciphertexts_refreshed": 5}], "layer": 1,
            "head": {"ciphertexts_refreshed": 1},
            "rows": [{"block": "L0.qkv", "level_in": 4}, {"block": "L0.gelu", "level_in": 3},
                     {"block": "L1.qkv", "level_in": 9}, {"block": "L1.gelu", "level_in": 1},
                     {"block": "head", "level_in": 2}]}
    timed = [{"kind": "QKV", "seconds": 2.0, "count_per_layer": 1}, {"kind": "GELU", "seconds": 3.0, "count_per_layer": 2},
             {"kind": "head", "seconds": 0.5, "count_per_layer": 1}]  # seconds: per layer, already scaled
    d = bb.derive(info, timed, 10.0, 2)
    assert d["layer_compute_s"] == 5.0 and d["layer_s"] == 5.0 + 5 * 10.0
    assert d["model_s"] == 2 * 5.0 + (3 + 5 + 1) * 10.0 + 0.5 and d["model_bootstraps"] == 9
    # layer 0 at its own levels: QKV 2.0 / 10 limbs x 5, GELU 3.0 / 2 limbs x 4
    assert d["model_by_limbs_s"] == pytest.approx(0.2 * 5 + 1.5 * 4 + 2.0 + 3.0 + 0.5 + 9 * 10.0)
    assert not d["complete"]


def test_limb_seconds_reproduce_the_timed_blocks():
    """NEXUS-BERT-PLAN-TIME: the seconds per limb give back each timed block's seconds on the timed layer;
    the time-weighted plan derives no more time than the fewest-refreshes plan under the same weights
    (and here less: it refreshes more ciphertexts to run the products lower)."""
    p, rc = bootstrap_parameters(2048, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
    m = small("2quad-freediv-quad", layers=3, hidden_size=32, num_attention_heads=4, intermediate_size=128)
    info = bb.blocks(m, 16, (p, rc))
    rng = np.random.default_rng(0)
    kinds = [b["kind"] for b in info["layer_blocks"]] + ["head"]
    timed = [{"kind": k, "seconds": float(rng.uniform(1, 100))} for k in kinds]
    limb = bb.limb_seconds(info, timed)
    layer = [r for r in info["rows"] if r["block"].startswith(f"L{info['layer']}.") or r["block"] == "head"]
    for t in timed:
        got = sum(limb[r["block"]] * (r["level_in"] + 1) for r in layer if bb.kind_of(r["block"]) == t["kind"])
        assert got == pytest.approx(t["seconds"], rel=1e-12)
    assert set(limb) == {r["block"] for r in info["rows"]}

    def seconds(inf, boot_s):
        return sum(limb[r["block"]] * (r["level_in"] + 1) + r["bootstraps"] * boot_s for r in inf["rows"])

    for boot_s in (0.5, 5.0, 500.0):
        w = bb.blocks(m, 16, (p, rc), limb_s=limb, boot_s=boot_s)
        assert seconds(w, boot_s) <= seconds(info, boot_s) + 1e-9
    w = bb.blocks(m, 16, (p, rc), limb_s=limb, boot_s=0.5)
    assert seconds(w, 0.5) < seconds(info, 0.5)
    assert w["total"]["ciphertexts_refreshed"] > info["total"]["ciphertexts_refreshed"]


def test_reproduce_bertbase_plan_and_table(tmp_path, capsys):
    """`refimpl reproduce nexus-bertbase --plan-only` writes the 128-bit plan; `--table` prints it back: one row per
    block kind of the model, the planned refreshes per block summing to the layer's, untimed blocks said so."""

    out = tmp_path / "bb.json"
    assert cli_main(["reproduce", "nexus-bertbase", "--plan-only", "--models", "2quad-freediv-quad", "--json", str(out)]) == 0
    res = __import__("json").loads(out.read_text())
    assert res["command"].startswith("refimpl reproduce nexus-bertbase") and res["N"] == 2**16
    m = res["models"]["2quad-freediv-quad"]
    capsys.readouterr()
    assert cli_main(["reproduce", "nexus-bertbase", "--table", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("128-bit")
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in text.splitlines() if ln.startswith("| ")}
    kinds = [b["kind"] for b in m["layer_blocks"]]
    assert "GELU" not in rows and "Softmax" not in rows and set(kinds) <= set(rows)
    refreshed = [int(rows[k].split("(")[-1].split(")")[0]) for k in kinds]
    assert all("not timed" in rows[k] for k in kinds)
    assert sum(refreshed) == m["per_layer"][m["layer_shown"]]["ciphertexts_refreshed"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="expected a result"):
        cli_main(["reproduce", "nexus-bertbase", "--table", str(bad)])


def test_merge_joins_runs_of_disjoint_models(tmp_path, capsys):
    """`--merge` joins one-model runs into the result `--table` reads: both models' columns, each with its own
    run's command; runs of another n, a model twice, or a foreign file are refused by name."""

    files = {}
    for name in ("2quad-freediv-quad", "softmax-gelu"):
        files[name] = tmp_path / f"{name}.json"
        assert cli_main(["reproduce", "nexus-bertbase", "--plan-only", "--models", name, "--json", str(files[name])]) == 0
    out = tmp_path / "both.json"
    assert cli_main(["reproduce", "nexus-bertbase", "--merge", *map(str, files.values()), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["models"]) == list(files)
    for name, f in files.items():
        alone = json.loads(f.read_text())
        assert res["models"][name]["run"]["command"] == alone["command"]
        assert res["models"][name]["total"] == alone["models"][name]["total"]
    capsys.readouterr()
    assert cli_main(["reproduce", "nexus-bertbase", "--table", str(out)]) == 0
    header = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| block"))
    assert "2quad-freediv-quad s" in header and "softmax-gelu s" in header
    with pytest.raises(ValueError, match="already in an earlier result"):
        cli_main(["reproduce", "nexus-bertbase", "--merge", str(files["softmax-gelu"]), str(out), "--json", str(tmp_path / "x.json")])
    other = json.loads(files["softmax-gelu"].read_text())
    other["n"] = 64
    (tmp_path / "n64.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="n = 64, expected 128"):
        cli_main(["reproduce", "nexus-bertbase", "--merge", str(files["2quad-freediv-quad"]), str(tmp_path / "n64.json"),
                 "--json", str(tmp_path / "x.json")])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="expected a result"):
        cli_main(["reproduce", "nexus-bertbase", "--merge", str(files["2quad-freediv-quad"]), str(tmp_path / "bad.json"),
                 "--json", str(tmp_path / "x.json")])
    with pytest.raises(ValueError, match="give --json"):
        cli_main(["reproduce", "nexus-bertbase", "--merge", *map(str, files.values())])


@pytest.fixture(scope="module")
def ring():
    return bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)


@pytest.mark.parametrize("model,n,shifts", [("softmax-gelu", 8, None), ("2quad-freediv-quad", 16, [1, 3, 6, 12])])
def test_timed_kernels_match_numpy(ring, model, n, shifts):
    """Every timed instance, decrypted, equals numpy float64 (the same approximations: QuickMax/exp/
    Goldschmidt, the 4-piece GELU, Newton + Goldschmidt 1/sqrt) within 1e-4 of its magnitude
    (CKKS noise at Delta = 2^~30 is about 1e-7; the approximations are modelled exactly); counts
    scale by the layer's ciphertexts and by n_pad / shifts."""
    p, rc = ring
    m = small(model, layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=128)
    t = bb.BlockTimer(p, rc, m, n, shifts=shifts)
    lay = t.lay
    assert lay.head_rows and lay.n_pad == n and lay.chunk == min(32, lay.slots // (2 * n)) and lay.score_cts == 2
    out = t.run()
    kinds = [r["kind"] for r in out]
    assert kinds[0] == "QKV" and kinds[-1] == "head" and len(kinds) == 11
    assert ("Softmax" in kinds) == (model == "softmax-gelu") and ("Quad" in kinds) == (model != "softmax-gelu")
    for r in out:
        assert r["max_err"] <= 1e-4 * max(1.0, r["max_abs_reference"]), r
        assert r["seconds"] >= 0 and r["cpu_seconds"] >= 0 and "time inflated" not in r["note"], r
    frac = lay.n_pad / (len(shifts) if shifts else lay.n_pad)
    qk = next(r for r in out if r["kind"] == "Q K^T")
    assert qk["count_per_layer"] == lay.chunks(lay.d) * frac
    assert qk["seconds"] == pytest.approx(qk["instance_s"] * qk["count_per_layer"], abs=1e-3 * (1 + qk["count_per_layer"]))
    lin = next(r for r in out if r["kind"] == "FFN2")
    ci, ch = 128 // lay.chunk, 32 // lay.chunk  # FFN2: 128 -> 32 features in chunks of P
    assert lin["count_per_layer"] == {"calls": 1, "baby_steps": ci, "giant_steps": ch, "blocks": ci * ch}
    assert lin["seconds"] == pytest.approx(ci * lin["t_baby"] + ch * lin["t_giant"] + ci * ch * lin["t_diagonals"],
                                           abs=2e-3 * (1 + ci * ch))
    sm = next((r for r in out if r["kind"] == "Softmax"), None)
    if sm is not None:  # 3 QuickMax rounds of 18 levels among 19: refreshes inside the block, excluded
        assert sm["refreshes_inside_excluded_s"] > 0 and sm["count_per_layer"] == lay.score_cts


def test_timer_rejects_bad_shifts(ring):
    p, rc = ring
    m = small("2quad-freediv-quad")
    with pytest.raises(ValueError, match="key shifts"):
        bb.BlockTimer(p, rc, m, 16, shifts=[0, 16])
    with pytest.raises(ValueError, match="head_rows layout"):
        bb.BlockTimer(p, rc, m, 8)  # rows of 8 keys fit a head of 8 slots: not this layout


@pytest.mark.parametrize("attention,activation", [("softmax", "gelu"), ("2quad-freediv", "quad")])
def test_encrypted_forward_with_head_rows(ring, attention, activation):
    """NEXUS-BERT-FORWARD with head_rows (what bertbase times, end to end at a small size): 4 heads
    of 8 in one chunk, rows of 16 keys (32 with Softmax's duplication) in their own ciphertexts;
    the encrypted logits equal the float64 model of the same approximations (oracle refreshes)."""
    from refimpl.bert.config import BertConfig
    from refimpl.bert.model import init_params
    from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
    from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
    from refimpl.ring.sampling import RandomSource

    p, rc = ring
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=16, attention=attention, activation=activation)
    rng = np.random.default_rng(1)
    params = init_params(cfg, rng, dtype=np.float64)
    for k in params:
        if "LayerNorm" not in k and "embeddings" not in k:
            params[k] = params[k] * 10 if k.endswith("weight") else rng.normal(0, 0.1, params[k].shape)
    model = nb.NexusModel(cfg, params)
    n = 12 if attention == "softmax" else 16  # n_pad 16 > dh = 8
    ids, mask = rng.integers(1, 50, n), np.r_[np.ones(n - 2), np.zeros(2)]
    lay = nb.input_layout(cfg, n, p.slots, head_rows=True)
    assert lay.head_rows and lay.chunk // lay.head_dim >= 2
    kg = KeyGenerator(p, RandomSource.insecure_seeded(3))
    sk = kg.secret_key()
    ev = Evaluator(p, kg.evaluation_keys(sk, rotations=nb.rotation_steps(cfg, n, p.slots, head_rows=True)))
    bts = OracleBootstrapper(sk, output_level=p.L - rc.depth)
    enc, E, D = Encoder(p), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4)), Decryptor(sk)
    x = nb.client_embed(cfg, params, ids, mask)
    cts = [E.encrypt(enc.encode(v, level=bts.output_level)) for v in nb.pack_input(x, lay)]
    ref = nb.plaintext_reference(model, ids, mask, approximate=True)
    (z,) = nb.encrypted_forward(ev, bts, model, cts, n, mask, head_rows=True)
    logits = nb.unpack_output([enc.decode(D.decrypt(z)).real], lay, cfg.num_labels)
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-3)
    assert bts.calls == sum(r["bootstraps"] for r in nb.plan(model, n, (p, rc), head_rows=True))


def test_weigh_by_plans_the_stored_time_weighted_placement(tmp_path):
    """NEXUS-BERT-PLAN-TIME: `--plan-only --weigh-by` on the stored timings (results/nexus/nexus_bertbase_128.json,
    timed on an earlier design: its fewest-refreshes plan is replaced by today's, which the guard below requires)
    moves the refreshes away from the fewest-refreshes plan; a bootstrap 100x dearer gives back the
    fewest-refreshes plan; a file without the model's timings, or of another plan, is refused."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "results" / "nexus"
    name = "2quad-freediv-quad"
    fewest_json = tmp_path / "fewest.json"
    assert cli_main(["experiment", "bertbase", "--plan-only", "--models", name, "--json", str(fewest_json)]) == 0
    fewest = json.loads(fewest_json.read_text())["models"][name]
    doc = json.loads((root / "nexus_bertbase_128.json").read_text())
    timed = tmp_path / "timed.json"
    timed.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="has another plan"):  # the stored plan is not today's: refused
        cli_main(["experiment", "bertbase", "--plan-only", "--models", name, "--weigh-by", str(timed)])
    doc["models"][name]["per_layer"] = fewest["per_layer"]
    timed.write_text(json.dumps(doc))
    out = tmp_path / "w.json"
    base = ["--plan-only", "--models", name, "--weigh-by", str(timed)]
    assert cli_main(["experiment", "bertbase", *base, "--json", str(out)]) == 0
    m = json.loads(out.read_text())["models"][name]
    assert m["per_layer"] != fewest["per_layer"]
    assert m["placement"]["boot_s"] == bb.QUIET_BOOTSTRAP_S and m["placement"]["weighed_by"].endswith("timed.json")
    assert cli_main(["experiment", "bertbase", *base, "--boot-s", str(100 * bb.QUIET_BOOTSTRAP_S), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["models"][name]["total"] == fewest["total"]
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"models": {}}))
    with pytest.raises(ValueError, match="no timed run of 2quad-freediv-quad"):
        cli_main(["experiment", "bertbase", "--plan-only", "--models", name, "--weigh-by", str(empty)])
    partial = tmp_path / "partial.json"
    doc["models"][name]["timed"] = [r for r in doc["models"][name]["timed"] if r["kind"] != "P V"]
    partial.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"timed no \['P V'\]"):
        cli_main(["experiment", "bertbase", "--plan-only", "--models", name, "--weigh-by", str(partial)])


def test_cli_defaults_are_the_experiments_constants():
    """`refimpl experiment` keeps the defaults in its parser (no library import at `--help`): they must be the
    experiments' own constants."""
    from refimpl.cli import experiments as ce
    from refimpl.experiments import nexus_blocks

    assert (ce.KEY_SHIFTS, ce.QUIET_BOOTSTRAP_S, ce.BERTBASE_PRESET) == (bb.KEY_SHIFTS, bb.QUIET_BOOTSTRAP_S, bb.PRESET)
    assert ce.BERTBASE_MODELS.split(",") == list(bb.MODELS)
    assert ce.NEXUS_BLOCK_ROWS.split(",") == list(nexus_blocks.ALL_ROWS)
    from refimpl.cli import build_parser

    args = build_parser().parse_args(["experiment", "bertbase", "--plan-only"])
    assert args.n == bb.N_TOKENS and args.func is ce.bertbase
