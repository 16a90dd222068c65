"""Bootstrapping: refresh a level-0 ciphertext without the secret key; stage by stage.

Run: python examples/bootstrapping.py [--preset toy-2^10] [--fast]   (toy rings are insecure: tests only)
"""

import argparse

import numpy as np

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_preset
from refimpl.ckks.precision import precision_bits
from refimpl.ring.sampling import RandomSource


def main(preset_name: str = "toy-2^10") -> dict:
    params, config = bootstrap_preset(preset_name)
    print(params.security_note)
    keygen = KeyGenerator(params, RandomSource.insecure_seeded(1))
    sk = keygen.secret_key()
    pk = keygen.public_key(sk)
    # the client generates exactly the Galois keys the bootstrapper declares
    needed = Bootstrapper(Evaluator(params), config).galois_elements()
    server = Bootstrapper(Evaluator(params, keygen.evaluation_keys(sk, elements=needed)), config)
    print(server.describe())

    encoder = Encoder(params)
    z = np.random.default_rng(0).uniform(-1, 1, params.slots)
    ct = server.ev.drop_level(Encryptor(pk, RandomSource.insecure_seeded(2)).encrypt(encoder.encode(z)), 0)
    print("before:", ct)                            # level 0: no multiplication left
    fresh = server.bootstrap(ct)                    # ModRaise -> C2S -> EvalMod -> S2C
    print("after: ", fresh)
    prec = precision_bits(encoder.decode(Decryptor(sk).decrypt(fresh)).real, z)
    print(f"precision min {prec['min']:.1f} / mean {prec['mean']:.1f} / median {prec['median']:.1f} bits")
    return prec


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="toy-2^10")
    ap.add_argument("--fast", action="store_true", help="the smallest ring, toy-2^10 (tests)")
    args = ap.parse_args()
    main("toy-2^10" if args.fast else args.preset)
