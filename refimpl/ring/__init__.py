"""Polynomial rings Z_Q[X]/(X^N + 1) in RNS form: primes, NTT, base conversion, automorphisms, sampling."""
