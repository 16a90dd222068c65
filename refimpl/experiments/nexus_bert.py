"""The encrypted BERT on short SST-2 sentences: encrypted vs plaintext logits (results/nexus/nexus_bert_*.json).

Client and server run in one process (the secret key only decrypts): per sentence the encrypted
logits against the float64 model of the same approximations and against the exact model, the
per-layer errors, the bootstraps and the time per block; or, with plan_only, the bootstrapping
plans at given presets. Command line: `refimpl experiment nexus-bert` (refimpl.cli.experiments).

Reference: NEXUS (Zhang et al., NDSS 2025) §3-4 (the encrypted BERT of refimpl.nexus.bert).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numba
import numpy as np

from ..bert import weights
from ..bert.shipped import model_dir
from ..bert.tokenizer import BertTokenizer
from ..ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from ..ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_parameters, bootstrap_preset
from ..ckks.bootstrap.placement import plan_table
from ..ckks.keys import galois_element
from ..measure import peak_rss_mib
from ..nexus.bert.chain import greedy_points, plan
from ..nexus.bert.forward import encrypted_forward
from ..nexus.bert.layout import client_embed, input_layout, pack_input, rotation_steps, unpack, unpack_output
from ..nexus.bert.ranges import NexusModel, calibrate, check_ranges
from ..nexus.bert.reference import plaintext_reference
from ..ring.sampling import RandomSource

def run_sentences(model: NexusModel, sentences, params, rc, *, seed: int = 0, progress=print, on_row=None) -> dict:
    """Client and server in one process (the secret key only decrypts): encrypted vs plaintext
    logits per sentence [(text, ids, mask)], per-layer errors, bootstraps, time per block."""
    t = time.perf_counter()
    kg = KeyGenerator(params, RandomSource(seed + 1))
    sk = kg.secret_key()
    probe = Bootstrapper(Evaluator(params), rc)
    rots = sorted({r for _, ids, _ in sentences for r in rotation_steps(model.config, len(ids), params.slots)})
    levels = {galois_element(params, r): probe.output_level for r in rots if r % params.slots}  # after bootstrapping
    for k, lv in probe.galois_levels().items():
        levels[k] = max(levels.get(k, -1), lv)
    ev = Evaluator(params, kg.evaluation_keys(sk, elements=list(levels), levels=levels))
    bts = Bootstrapper(ev, rc, encapsulation=kg.encapsulation_keys(sk, kg.secret_key(hamming_weight=rc.encapsulation_h))
                       if rc.encapsulation_h else None)
    enc, E, D = Encoder(params), Encryptor(kg.public_key(sk), RandomSource(seed + 2)), Decryptor(sk)
    keygen_s = time.perf_counter() - t
    out = []
    for text, ids, mask in sentences:
        lay = input_layout(model.config, len(ids), params.slots)
        ap = plaintext_reference(model, ids, mask, approximate=True)
        ex = plaintext_reference(model, ids, mask, approximate=False)
        check_ranges(model, ap)
        x = client_embed(model.config, model.params, ids, mask)
        cts = [E.encrypt(enc.encode(v, level=bts.output_level)) for v in pack_input(x, lay)]
        trace, taps = [], {}
        t = time.perf_counter()
        calls0 = bts.calls
        (z,) = encrypted_forward(ev, bts, model, cts, len(ids), mask, trace=trace, taps=taps)
        secs = time.perf_counter() - t
        logits = unpack_output([enc.decode(D.decrypt(z)).real], lay, model.config.num_labels)
        layer_err = [float(np.max(np.abs(unpack([enc.decode(D.decrypt(c)).real for c in taps[f"L{i}"]], lay, lay.d)
                                         - ap["hidden"][i + 1]))) for i in range(model.config.num_hidden_layers)]
        row = {"sentence": text, "n": len(ids), "logits_encrypted": logits.tolist(), "logits_model": ap["logits"].tolist(),
               "logits_exact": ex["logits"].tolist(),
               "max_err_vs_model": float(np.max(np.abs(logits - ap["logits"]))),
               "max_err_vs_exact": float(np.max(np.abs(logits - ex["logits"]))),
               "model_vs_exact": float(np.max(np.abs(ap["logits"] - ex["logits"]))),
               "layer_max_err_vs_model": layer_err,
               "pred_encrypted": int(np.argmax(logits)), "pred_model": int(np.argmax(ap["logits"])),
               "pred_exact": int(np.argmax(ex["logits"])), "bootstraps": bts.calls - calls0, "seconds": round(secs, 1),
               "block_seconds": {r["block"]: round(r["seconds"], 2) for r in trace}}
        out.append(row)
        if on_row is not None:
            on_row(out)  # e.g. write the rows so far (long runs)
        progress(json.dumps({k: row[k] for k in ("n", "max_err_vs_model", "pred_encrypted", "pred_exact", "bootstraps", "seconds")}))
    return {"keygen_s": round(keygen_s, 1), "rows": out, "peak_rss_gib": round(peak_rss_mib() / 1024, 2),
            "bootstrap": bts.describe(), "security": params.security_note}


def short_sentences(glue_dir: Path, tok: BertTokenizer, split: str, k: int, max_tokens: int) -> list:
    """The first k SST-2 sentences of `split` with at most max_tokens tokens: [(text, ids, mask)]."""
    rows = [ln.rstrip("\n").split("\t") for ln in open(Path(glue_dir) / "SST-2" / f"{split}.tsv")][1:]
    out = []
    for text, *_ in rows:
        ids, _ = tok.encode(text, max_length=128)
        if len(ids) <= max_tokens:
            out.append((text, np.array(ids), np.ones(len(ids), dtype=np.int64)))
        if len(out) == k:
            break
    return out


def command(a, cmd: str) -> int:
    """`refimpl experiment nexus-bert` (options: refimpl.cli.experiments); cmd: the command line, recorded."""
    if a.logN <= 12:
        numba.set_num_threads(1)  # small rings: thread launches dominate (tests/nexus/conftest.py)
    d = Path(a.model)
    if not d.exists():
        d = model_dir(a.model)
    cfg, prm = weights.load(d, dtype=np.float32)
    tok = BertTokenizer(d / "vocab.txt")
    model = NexusModel(cfg, prm)
    model.ranges = calibrate(model, [(i, m) for _, i, m in short_sentences(a.glue_dir, tok, "train", a.calibration,
                                                                           a.max_tokens)])
    if a.plan_only is not None:
        res = {"model": str(a.model), "settings": model.settings(), "plans": []}
        for name in a.plan_only:
            pr = bootstrap_preset(name)
            for n in (8, 16):
                rows = plan(model, n, pr)
                res["plans"].append({
                    "preset": name, "N": pr[0].N, "bootstrap_level": pr[0].L - pr[1].depth, "n": n,
                    "chunk": input_layout(cfg, n, pr[0].slots).chunk,
                    "levels_used": sum(r["cost"] for r in rows), "bootstrap_points": sum(r["bootstrap"] for r in rows),
                    "ciphertexts_bootstrapped": sum(r["bootstraps"] for r in rows),
                    "greedy_points": greedy_points(model, n, pr), "table": plan_table(rows).splitlines()})
                print(name, n, res["plans"][-1]["ciphertexts_bootstrapped"], file=sys.stderr)
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
        return 0
    params, rc = bootstrap_parameters(2**a.logN, levels_after=a.levels_after, encapsulation_h=32, num_p=3,
                                      insecure=a.logN < 16)
    print(f"{'INSECURE toy ring' if params.insecure else '128-bit'}: {params.security_note}", file=sys.stderr)
    sents = short_sentences(a.glue_dir, tok, "dev", a.offset + a.sentences, a.max_tokens)[a.offset:]
    rows = plan(model, max(len(s[1]) for s in sents), (params, rc))
    print(plan_table(rows), file=sys.stderr)

    def partial(rows_so_far):
        if a.json:
            Path(a.json).write_text(json.dumps({"partial": True, "command": cmd, "model": str(a.model), "N": params.N,
                                                "insecure": params.insecure, "rows": rows_so_far}, indent=1) + "\n")

    res = run_sentences(model, sents, params, rc, progress=lambda s: print(s, file=sys.stderr), on_row=partial)
    res.update(model=str(a.model), config=json.loads(cfg.to_json()), N=params.N, levels_after=a.levels_after,
               log_qp=round(params.log_qp), insecure=params.insecure, settings=model.settings(), command=cmd,
               plan_bootstraps_per_sentence_at_max_n=sum(r["bootstraps"] for r in rows),
               agreement=sum(r["pred_encrypted"] == r["pred_model"] for r in res["rows"]),
               max_err_vs_model=max(r["max_err_vs_model"] for r in res["rows"]))
    text = json.dumps(res, indent=1)
    if a.json:
        Path(a.json).write_text(text + "\n")
    print(json.dumps({k: res[k] for k in ("agreement", "max_err_vs_model", "plan_bootstraps_per_sentence_at_max_n")}))
    return 0
