"""One NEXUS Softmax (§3.1.3, Alg. 1) with real bootstrapping on a small INSECURE ring (toy-2^10-deep).

Run: python examples/nexus_softmax.py [--fast]   (a minute or less: two bootstraps at N = 2^10)
"""
import numpy as np
from refimpl.nexus import BlockContext

ctx = BlockContext.create("softmax", n=4, window=8, bootstrap="toy-2^10-deep")  # rows of 4 in windows of 8
x = np.zeros((ctx.slots // 8, 8)); x[:, :4] = np.random.default_rng(0).uniform(-0.5, 0.5, (ctx.slots // 8, 4))
y = ctx.decrypt(ctx.run(ctx.encrypt(x.ravel()), bound=0.5)).reshape(-1, 8)[:, :4]
exact = np.exp(x[:, :4]) / np.exp(x[:, :4]).sum(1, keepdims=True)
print(f"softmax of {len(y)} rows of 4 under encryption: max |error| {np.max(np.abs(y - exact)):.2e}")
