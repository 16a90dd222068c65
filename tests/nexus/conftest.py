import numba
import pytest


@pytest.fixture(autouse=True, scope="package")
def _one_numba_thread():
    """Small rings (N <= 2^12) run 10-25x faster on one numba thread: the parallel kernels'
    thread launches dominate at this size, and more so when the machine is loaded."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)
