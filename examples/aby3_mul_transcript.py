"""One ABY3 multiplication, party by party: the shares, the messages on the wire, bytes, rounds.

Three parties hold replicated shares over Z_2^64: party i holds (x_i, x_{i+1}) with
x = x_0 + x_1 + x_2. To multiply, party i computes locally
    z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + alpha_i      (alpha: a PRSS zero sharing)
so that z_0 + z_1 + z_2 = x y, then sends z_i to party i-1 (one ring element per party, one
round): party i ends with (z_i, z_{i+1}), a replicated sharing of x y. The inputs are fixed
point with 18 fraction bits; the product carries 36 until it is truncated (not shown here).

Run: python examples/aby3_mul_transcript.py [--fast]   (it is fast either way)
Reference: ABY3 (Mohassel-Rindal, CCS 2018) §2.2 and §3.1; spec/aby3.md ABY3-MUL-1.
"""

import argparse

import numpy as np

from refimpl.aby3 import arith
from refimpl.aby3.fixed import FRACTION_BITS
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, share_input

MASK = (1 << 64) - 1


def hexw(v) -> str:
    return " ".join(f"{int(w):016x}" for w in np.atleast_1d(v))


def main(x=(1.5, -2.25), y=(4.0, 0.5)) -> dict:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def program(p):
        xs = share_input(p, 0, x if p.id == 0 else None)    # party 0 owns x
        ys = share_input(p, 1, y if p.id == 1 else None)    # party 1 owns y
        z3 = arith.mul_local(p, xs, ys)                      # z_i: this party's 3-of-3 share
        with p.net.scope("mul"):
            zs = arith.reshare(p, z3)                        # sends z_i to party i-1
        out = reveal(p, zs, raw=True)                        # open the raw ring product to all
        return {"x": (xs.a, xs.b), "y": (ys.a, ys.b), "z3": z3, "z": (zs.a, zs.b), "open": out}

    res = simulate(program, insecure_seed=7, record_views=True)
    f = FRACTION_BITS
    print(f"x = {x} (party 0's input), y = {y} (party 1's input), fixed point with f = {f} bits")
    for i, o in enumerate(res.outputs):
        print(f"party {i} holds x_{i}, x_{(i + 1) % 3} = {hexw(o['x'][0])} | {hexw(o['x'][1])}")
    for i, o in enumerate(res.outputs):
        print(f"party {i} holds y_{i}, y_{(i + 1) % 3} = {hexw(o['y'][0])} | {hexw(o['y'][1])}")
    # the two shares each party holds agree with its neighbours' (replication)
    replicated = all(np.array_equal(res.outputs[i]["x"][1], res.outputs[(i + 1) % 3]["x"][0]) for i in range(3))
    print(f"replication: party i's second share is party i+1's first: {replicated}")
    print("multiplication, local step: z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + alpha_i")
    for i, o in enumerate(res.outputs):
        print(f"party {i}: z_{i} = {hexw(o['z3'])}")
    print("messages of the multiplication (recorded views: what each party received):")
    for i, net in enumerate(res.nets):
        for tag, frm, arr in net.view:
            if tag == "mul":
                print(f"  party {frm} -> party {i}: z_{frm} = {hexw(arr)} ({arr.nbytes} bytes)")
    st = res.scope("mul")
    print(f"multiplication cost: {st['bytes']} bytes in all ({st['bytes'] // x.size} per element, "
          f"3 x 64 bits), {st['rounds']} round, {st['sends']} send per party")
    zsum = sum(int(o["z3"][0]) for o in res.outputs) & MASK
    prod = res.outputs[0]["open"].astype(np.int64).astype(float) / 2.0 ** (2 * f)
    print(f"reconstruction: z_0 + z_1 + z_2 = {zsum:016x} (mod 2^64) = the first product at scale 2^{2 * f}")
    print(f"opened x*y = {prod} (plaintext {x * y}); every party opened the same: "
          f"{all(np.array_equal(o['open'], res.outputs[0]['open']) for o in res.outputs)}")
    return {"bytes": st["bytes"], "rounds": st["rounds"], "product": prod, "expected": x * y,
            "replicated": replicated}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="accepted for uniformity; the example is fast")
    ap.parse_args()
    main()
