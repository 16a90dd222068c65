"""Each party's view is independent of the secret (spec/aby3.md ABY3-VIEW-1).

For two different secrets, run a protocol under many seeds and compare one party's view
(every byte it received inside the protocol, the output opening excluded) by a
two-sample chi-square test on byte values; a control shows the test does catch a leak.
"""

import numpy as np
import pytest

from refimpl.aby3 import arith, boolean as B, nonlinear as NL
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import share_input

RUNS = 12
N = 64


def view_bytes(secret, fn, party, leak=False, salt=0):
    """Bytes party `party` received inside fn over RUNS seeded runs, plus each 64-bit message
    combined with the party's own shares of x (r + x_i, r + x_{i+1}, r + x_i + x_{i+1}, r ^ x_i ^ x_{i+1}): a view
    is only safe if it reveals nothing together with what the party already holds."""
    chunks = []
    for seed in range(RUNS):
        def prog(p):
            x = share_input(p, 0, secret if p.id == 0 else None)
            y = share_input(p, 0, secret[::-1] if p.id == 0 else None)
            with p.net.scope("op"):
                fn(p, x, y)
                if leak:  # control: party 1 sends its plain pair sum to party 2 (leaks x)
                    if p.id == 1:
                        p.net.send(2, x.a + x.b)
                    if p.id == 2:
                        p.net.recv(1)
            return x

        res = simulate(prog, insecure_seed=seed + 1000 * party + 100_000 * salt, record_views=True)
        own = res.outputs[party]
        for tag, _, arr in res.nets[party].view:
            if tag.startswith("op"):
                chunks.append(np.ascontiguousarray(arr).view(np.uint8).ravel())
                if arr.dtype == np.uint64 and arr.size == own.a.size:
                    r = arr.reshape(own.a.shape)
                    for c in (r + own.a, r + own.b, r + own.a + own.b, r ^ own.a ^ own.b):
                        chunks.append(c.view(np.uint8).ravel())
    return np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)


def chi2_z(a, b):
    """Two-sample chi-square on 256 byte values, as a z-score (df = 255)."""
    ha = np.bincount(a, minlength=256).astype(float)
    hb = np.bincount(b, minlength=256).astype(float)
    ka, kb = np.sqrt(hb.sum() / ha.sum()), np.sqrt(ha.sum() / hb.sum())
    keep = (ha + hb) > 0
    stat = np.sum((ka * ha[keep] - kb * hb[keep]) ** 2 / (ha[keep] + hb[keep]))
    df = keep.sum() - 1
    return (stat - df) / np.sqrt(2 * df)


PROTOCOLS = {
    "mul": lambda p, x, y: arith.mul(p, x, y),
    "fxp_mul": lambda p, x, y: arith.fxp_mul(p, x, y),
    "truncate": lambda p, x, y: arith.truncate(p, x),
    "truncate_share": lambda p, x, y: arith.truncate_share(p, x, 18),
    "a2b": lambda p, x, y: B.a2b(p, x),
    "msb": lambda p, x, y: B.msb(p, x),
    "inject": lambda p, x, y: B.inject(p, B.msb(p, x), y),
    "b2a": lambda p, x, y: B.b2a(p, B.a2b(p, x)),
    "relu": lambda p, x, y: NL.relu(p, x),
    "quad": lambda p, x, y: NL.quad(p, x),
    "exp": lambda p, x, y: NL.exp_neg(p, x, iters=4),
    "reciprocal": lambda p, x, y: NL.reciprocal(p, arith.add_public(p, NL.relu(p, x), 1.0), iters=1),
}

S0 = np.zeros(N)
S1 = np.linspace(-3000.0, 3000.0, N)


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
@pytest.mark.parametrize("party", [0, 1, 2])
def test_view_independent_of_secret(name, party):
    """ABY3-VIEW-1: the bytes a party receives have the same distribution for two secrets."""
    a = view_bytes(S0, PROTOCOLS[name], party)
    b = view_bytes(S1, PROTOCOLS[name], party, salt=1)  # independent seeds for the second secret
    if a.size == 0:
        assert b.size == 0  # this party receives nothing in this protocol
        return
    assert chi2_z(a, b) < 5.0  # one-sided: only a difference between the two secrets is a leak


def test_view_test_detects_a_leak():
    """Control for ABY3-VIEW-1: the test rejects a protocol where party 1 sends x_1 + x_2 to
    party 2 (uniform on its own, but x_0 + x_1 + x_2 = x together with party 2's shares)."""
    a = view_bytes(S0, PROTOCOLS["mul"], 2, leak=True)
    b = view_bytes(S1, PROTOCOLS["mul"], 2, leak=True, salt=1)
    assert chi2_z(a, b) > 5.0
