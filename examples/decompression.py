"""NEXUS compression and decompression (Alg. 5): N values in one ciphertext, N - 1 Subs to expand.

The client packs n <= N values into the coefficients of one plaintext, p = sum_j a_j X^j, and
sends one ciphertext (twice the N/2 values slot packing would carry). The server expands it with
the tree u -> u + Subs(u, N/2^i + 1), (u - Subs(u, N/2^i + 1)) X^(-2^i): leaf j is a_j in every
slot (a broadcast, the input of a ct-pt matrix product), with the factor n folded into the scale.
The tree is shown first on exact integer polynomials (PlainRing), then encrypted.

Run: python examples/decompression.py [--fast]   (--fast: n = 64 values instead of N = 1024)
Reference: NEXUS (Zhang et al., NDSS 2025) Alg. 5 and Theorem 1; spec/nexus.md NEXUS-ALG5-*.
"""

import argparse

import numpy as np

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ckks.precision import precision_bits
from refimpl.nexus.compression import PlainRing, compress, decompress, decompress_all, subs_elements
from refimpl.nexus.counting import CountingEvaluator
from refimpl.ring.sampling import RandomSource


def main(n: int = 1024, N: int = 1024) -> dict:
    # 1. the tree on exact integer polynomials: leaf j = n a_j X^0
    ring = PlainRing(8)
    a8 = np.arange(1, 9)
    leaves = decompress_all(ring, a8, 8)
    print("PlainRing, N = 8, p = 1 + 2X + ... + 8X^7: leaves (constant coefficients):",
          [int(leaf[0]) for leaf in leaves], "= 8 a_j; other coefficients all 0:",
          all(not leaf[1:].any() for leaf in leaves))

    # 2. encrypted: one ciphertext of n values, expanded by the server
    params = Parameters.create(N=N, levels=1, log_q0=60, log_qi=40, log_p=60, num_p=1, insecure=True)
    print(params.security_note)
    elements = subs_elements(N, n)                      # N/2^i + 1, i < log2 n: the only keys needed
    print(f"Subs keys for n = {n}: elements {elements}")
    keygen = KeyGenerator(params, RandomSource.insecure_seeded(1))
    sk = keygen.secret_key()
    enc = Encoder(params)
    ev = CountingEvaluator(Evaluator(params, keygen.evaluation_keys(sk, elements=elements, relin=False)))
    a = np.random.default_rng(0).uniform(-1, 1, n)
    ct = compress(enc, Encryptor(keygen.public_key(sk), RandomSource.insecure_seeded(2)), a)   # client: one ciphertext
    print(f"client sends {ct}: {n} values in one ciphertext")

    D = Decryptor(sk)
    got = np.empty(n)
    worst = [np.inf]
    scales = set()

    def consume(j, leaf):                               # server: each leaf used at once (depth first)
        z = enc.decode(D.decrypt(leaf)).real            # (decrypting here only to show the leaf)
        got[j] = z.mean()
        worst[0] = min(worst[0], precision_bits(z, np.full_like(z, a[j]))["min"])
        scales.add(leaf.scale / ct.scale)

    subs = decompress(ev, ct, consume, n)
    print(f"server: {subs} Subs (n - 1 = {n - 1}), {ev.counts['rotations']} rotations, "
          f"{ev.counts['rescales']} rescales; leaf scale = {sorted(scales)} x the input scale")
    print(f"leaf j decodes to a_j in every slot: worst {worst[0]:.1f} bits "
          f"(max |mean - a_j| = {np.max(np.abs(got - a)):.2e})")
    return {"subs": subs, "n": n, "bits": worst[0], "leaf_scale_factor": sorted(scales)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="expand 64 values instead of 1024 (tests)")
    main(n=64 if ap.parse_args().fast else 1024)
