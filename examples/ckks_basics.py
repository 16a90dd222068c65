"""CKKS basics: encrypt two vectors, multiply, rotate, decrypt; precision in bits.

Run: python examples/ckks_basics.py [--preset 128-2^13] [--fast]
"""

import argparse

import numpy as np

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, preset
from refimpl.ckks.precision import precision_bits
from refimpl.ring.sampling import RandomSource


def main(preset_name: str = "128-2^13") -> dict:
    params = preset(preset_name)
    print(params.security_note)
    keygen = KeyGenerator(params, RandomSource.insecure_seeded(1))
    sk = keygen.secret_key()
    pk = keygen.public_key(sk)
    eval_keys = keygen.evaluation_keys(sk, rotations=[3])  # only the rotations used
    encoder, ev = Encoder(params), Evaluator(params, eval_keys)
    encryptor, decryptor = Encryptor(pk, RandomSource.insecure_seeded(2)), Decryptor(sk)

    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, params.slots), rng.uniform(-1, 1, params.slots)
    cx, cy = encryptor.encrypt(encoder.encode(x)), encryptor.encrypt(encoder.encode(y))
    print(cx)                                       # level L, scale 2^40
    prod = ev.mul_rescale(cx, cy)                   # level L -> L-1, scale Delta^2 / q_L
    print(prod)
    rolled = ev.rotate(prod, 3)                     # slot j <- slot j + 3
    got = encoder.decode(decryptor.decrypt(rolled)).real
    prec = precision_bits(got, np.roll(x * y, -3))
    print(f"x*y rotated by 3: precision min {prec['min']:.1f} / mean {prec['mean']:.1f} bits")
    return prec


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="128-2^13")
    ap.add_argument("--fast", action="store_true", help="the smallest 128-bit preset, 128-2^13 (tests)")
    args = ap.parse_args()
    main("128-2^13" if args.fast else args.preset)
