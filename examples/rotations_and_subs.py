"""Rotations, conjugation and subs(k): each one automorphism X -> X^k, checked against plaintext.

Slot j of a CKKS plaintext sits at the root zeta^(5^j mod 2N), so X -> X^k permutes the slots
(k = 5^r: rotation by r; k = 2N - 1: complex conjugation) and, in the coefficients, sends
X^i to +-X^(i k mod N) (the sign from X^N = -1). NEXUS's Subs(ct, k) is the same map for any
odd k; with k = N/2^i + 1 it is the step of the decompression tree (examples/decompression.py).

Run: python examples/rotations_and_subs.py [--fast]   (--fast: the insecure toy ring N = 2^10)
Reference: CKKS (Cheon et al. 2017) section 3; NEXUS §4 (Subs); spec/ckks.md CKKS-KS-1.
"""

import argparse

import numpy as np

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, preset
from refimpl.ckks.precision import precision_bits
from refimpl.ring.sampling import RandomSource


def subs_plain(a: np.ndarray, k: int) -> np.ndarray:
    """X -> X^k on the coefficients of a in Z[X]/(X^N + 1): a_i X^i -> +-a_i X^(i k mod N)."""
    N = a.size
    e = (np.arange(N) * k) % (2 * N)               # X^i -> X^(i k mod 2N)
    out = np.zeros_like(a)
    np.add.at(out, e % N, np.where(e < N, a, -a))  # X^(N + t) = -X^t
    return out


def main(preset_name: str = "128-2^13", r: int = 3) -> dict:
    params = preset(preset_name)
    N, slots = params.N, params.slots
    print(params.security_note)
    k_subs = N // 4 + 1                            # a NEXUS decompression element, N/2^i + 1 with i = 2
    keygen = KeyGenerator(params, RandomSource.insecure_seeded(1))
    sk = keygen.secret_key()
    keys = keygen.evaluation_keys(sk, rotations=[r], conjugate=True, elements=[k_subs])
    print(f"Galois keys generated (only those used): elements {sorted(keys.galois)}")
    enc, ev = Encoder(params), Evaluator(params, keys)
    E, D = Encryptor(keygen.public_key(sk), RandomSource.insecure_seeded(2)), Decryptor(sk)
    rng = np.random.default_rng(0)
    out = {}

    z = rng.uniform(-1, 1, slots) + 1j * rng.uniform(-1, 1, slots)
    ct = E.encrypt(enc.encode(z))
    got = enc.decode(D.decrypt(ev.rotate(ct, r)))
    out["rotate"] = precision_bits(got, np.roll(z, -r))["min"]
    print(f"rotate({r}) = X -> X^{pow(5, r, 2 * N)}: slot j <- slot j+{r}: {out['rotate']:.1f} bits")
    got = enc.decode(D.decrypt(ev.conjugate(ct)))
    out["conjugate"] = precision_bits(got, np.conj(z))["min"]
    print(f"conjugate   = X -> X^{2 * N - 1}: every slot conjugated: {out['conjugate']:.1f} bits")

    # the same maps through subs(k) with the same keys: identical ciphertexts (one automorphism)
    k_rot = pow(5, r, 2 * N)
    same = all(np.array_equal(x.c, y.c) for x, y in [(ev.subs(ct, k_rot), ev.rotate(ct, r)),
                                                      (ev.subs(ct, 2 * N - 1), ev.conjugate(ct))])
    print(f"subs({k_rot}) == rotate({r}) and subs({2 * N - 1}) == conjugate, bit for bit: {same}")
    out["rotate_is_subs"] = bool(same)

    # subs(k) on a coefficient-encoded message: the plaintext permutation with signs
    a = rng.uniform(-1, 1, N)
    cta = E.encrypt(enc.encode_coeffs(a))
    got = enc.decode_coeffs(D.decrypt(ev.subs(cta, k_subs)))
    want = subs_plain(a, k_subs)
    out["subs"] = precision_bits(got, want)["min"]
    print(f"subs({k_subs}) = X -> X^(N/4 + 1) on coefficients: {out['subs']:.1f} bits against the "
          f"plaintext permutation; a_1 = {a[1]:+.4f} moves to X^{k_subs % N} as {want[k_subs % N]:+.4f}")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="128-2^13")
    ap.add_argument("--fast", action="store_true", help="insecure toy ring N = 2^10 (tests)")
    args = ap.parse_args()
    main("toy-1024" if args.fast else args.preset)
