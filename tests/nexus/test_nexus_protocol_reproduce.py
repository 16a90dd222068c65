"""`refimpl reproduce nexus` (refimpl.reproduce.nexus): the BERT-base extrapolation against the
serialized-size formulas worked by hand, and a quick run of the toy model end to end."""

import json

from refimpl.bert.config import BertConfig
from refimpl.ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_preset
from refimpl.ckks.evaluator import Evaluator
from refimpl.ckks.keys import galois_element
from refimpl.ckks.serialize import HEAD
from refimpl.cli import main as cli_main
from refimpl.nexus.bert import rotation_steps
from refimpl.nexus.protocol.wire import public_key_nbytes, switching_key_nbytes
from refimpl.reproduce import nexus as R


def test_extrapolation_counts_bert_base_bytes():
    """NEXUS-REPRO-BW: 128 x 768 values in ceil(98304 / 2^16) = 2 compressed ciphertexts at level 1
    (or one level above the bootstrapping output), 3 dense slot-packed ones, one level-0 result; keys = public +
    (relinearization + 2 encapsulation + Galois) switching keys."""
    e = R.extrapolate("128-2^16-dense")
    p, rc = bootstrap_preset("128-2^16-dense")
    assert p.security_bits == 128 and e["N"] == 2**16
    out = p.L - rc.depth
    bits = lambda lvl: sum(int(q).bit_length() for q in p.q[: lvl + 1])  # noqa: E731
    ct = lambda lvl: HEAD.size + 11 + 2 * ((bits(lvl) * p.N + 7) // 8) + 4  # noqa: E731  header, level/size/scale, c0 c1, CRC
    assert e["query_compressed_bytes"] == 2 * ct(1)
    assert e["query_compressed_direct_bytes"] == 2 * ct(out + 1)
    assert e["query_slot_packed_bytes"] == 3 * ct(out)
    assert e["result_bytes"] == ct(0)
    assert e["galois_keys_subs"] == 16  # N/2^i + 1, i < 16
    boot = Bootstrapper(Evaluator(p), rc).galois_levels()
    by_level = {int(lv): c for lv, c in e["galois_keys_by_level"].items()}
    assert sum(by_level.values()) == e["galois_keys"]
    assert 0 < by_level[1] <= e["galois_keys_subs"]  # decompression at level 1 (unless bootstrapping needs the element)
    assert set(by_level) - {1, out} <= set(boot.values())  # the model's keys cover the bootstrapping output level
    swk = switching_key_nbytes
    assert e["keys_bytes"] == (public_key_nbytes(p) + 2 * swk(p) + swk(p, 0)
                               + sum(c * swk(p, lv) for lv, c in by_level.items()))
    assert e["keys_bytes"] < e["keys_bytes_all_full"] == public_key_nbytes(p) + (3 + e["galois_keys"]) * swk(p)
    assert e["query_compressed_bytes"] < e["query_slot_packed_bytes"]
    assert e["paper_total_bytes"] == 164e6
    cfg = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    rot = {galois_element(p, r) for r in rotation_steps(cfg, 128, p.slots, head_rows=True)}
    assert "head_rows" in e["model_rotations_source"] and e["galois_keys_model"] == len(rot)  # the layout timed, no estimate


def test_quick_run_prints_insecure_first_and_writes_json(tmp_path, capsys):
    f = tmp_path / "r.json"
    assert cli_main(["reproduce", "nexus", "--quick", "--models", "toy", "--json", str(f)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("INSECURE")
    doc = json.loads(f.read_text())
    (m,) = doc["measured"]
    q = m["queries"][0]
    assert m["max_logit_error_vs_float64_model"] < 1e-3
    assert q["bootstraps"] == 2 and q["bytes"]["keys"] > 0
    assert any(line.startswith("| online total (compressed)") and "164.00 MB" in line for line in lines)
