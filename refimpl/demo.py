"""`refimpl demo`: the main job, on what is built so far; it says plainly what is not built yet."""

from __future__ import annotations

import time

import numpy as np

STEPS_NOT_BUILT = [
    "NEXUS blocks (compression, QuickSum/QuickMax, Sgn, GELU, Softmax, LayerNorm, Argmax)",
    "bootstrapping",
    "ABY3 secure inference of the freeDiv student",
    "NEXUS encrypted inference of the small BERT",
]


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
    print("[2] not built yet:")
    for s in STEPS_NOT_BUILT:
        print(f"    - {s}")
    return 0
