"""Encrypt, multiply, rotate, decrypt with the CKKS context object (refimpl.ckks.Context).

Run: python examples/ckks_context.py [--fast]
"""
import numpy as np
from refimpl.ckks import Context

ctx = Context.create("128-2^13", rotations=[3])  # 128-bit ring N = 2^13; keys for rotate(., 3) only
x, y = np.linspace(-1, 1, ctx.slots), np.linspace(1, -1, ctx.slots)
out = ctx.rotate(ctx.multiply(ctx.encrypt(x), ctx.encrypt(y)), 3)  # slot j <- x[j+3] * y[j+3]
print(f"x*y rotated by 3: max |error| {np.max(np.abs(ctx.decrypt(out) - np.roll(x * y, -3))):.2e}")
