"""An ABY3 secure matrix product (three parties, fixed point) and what it cost on the wire.

Run: python examples/aby3_matmul.py [--fast]   (fast either way)
"""
import numpy as np
from refimpl.aby3 import arith, run

rng = np.random.default_rng(0)
A, B = rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, (3, 2))  # party 0 owns A, party 1 owns B
AB, report = run(arith.fxp_matmul, A, B)  # share, multiply and truncate on shares, open to all
print(f"A @ B on shares: max |error| {np.max(np.abs(AB - A @ B)):.1e}")
print(f"cost: {report}")
