import pytest

from refimpl.ckks import Parameters

from kit import Kit  # tests/kit.py (the tests folder is on the path by its conftest)


@pytest.fixture(scope="session")
def kit():
    """N = 2^12, 60-bit q_0, six 40-bit primes, dnum 3: small and insecure, fast."""
    p = Parameters.create(N=4096, levels=6, log_q0=60, log_qi=40, log_p=60, num_p=2, insecure=True)
    N = p.N
    return Kit(p, rotations=[1, -1, 2, 5, -7, 100, 1000], elements=[N // 2 + 1, N // 4 + 1, 2 * N - 3], conjugate=True)
