"""Polynomial rings Z_Q[X]/(X^N + 1) in RNS form: primes, NTT, base conversion, automorphisms, sampling.

    modarith      64-bit word arithmetic: Shoup and Barrett products (numba inline functions)
    primes        NTT-friendly primes q = 1 mod 2N and their roots of unity
    ntt           the negacyclic NTT per limb and over all limbs (Longa and Naehrig 2016)
    rns           a chain of primes, pointwise kernels, CRT, fast base conversion, ModUp/ModDown
    automorphism  sigma_k: a(X) -> a(X^k) in the coefficient and NTT domains
    sampling      uniform, ternary and Gaussian samplers from refimpl.csprng

Start with rns (how a polynomial is held), then ntt; refimpl.ckks builds on these.
"""
