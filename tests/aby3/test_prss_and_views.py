"""PRSS tested directly, and a view audit conditioned on what the receiving party knows (ABY3-PRSS-1, ABY3-VIEW-2).

PRSS (ABY3 §2.2): the three zero shares sum to zero and none is constant, the pairwise
draws agree between the two holders of a key and differ from every other stream, and a
party cannot draw from the key it does not hold.

The view audit of test_views.py compares byte histograms of whole messages: a leak that is
bilinear in the shares (a product whose zero-sharing mask is missing) still looks uniform
byte by byte, because the receiver's own random shares hide it. Here the audit holds fixed
everything the receiving party i can compute itself: its two shares of every input, its two
PRSS keys k_i and k_{i+1}, the public key and its private coins; only the secret (through the
third share) and what party i cannot know (the key k_{i+2} and the other parties' private
coins) vary. A message minus what party i can compute is then the message up to a constant,
and a secure protocol's messages must have the same distribution for two secrets. The
control, a multiplication without its zero-sharing mask, leaks x_{i+1} y_{i+2} + x_{i+2} y_{i+1}
and must be caught.
"""

import threading

import numpy as np
import pytest

from refimpl.aby3 import arith, boolean as B, nonlinear as NL
from refimpl.aby3.arith import reshare
from refimpl.aby3.fixed import Fxp, U64
from refimpl.aby3.network import InMemoryTransport, Network
from refimpl.aby3.party import Party
from refimpl.aby3.prss import PRSS, setup_keys
from refimpl.aby3.shares import AShare

SHAPE = (4, 16)


def prss_trio(seed: int = 5) -> list[PRSS]:
    keys = setup_keys(seed)
    return [PRSS(i, keys[i], keys[(i + 1) % 3], keys[3]) for i in range(3)]


# ---- PRSS ---------------------------------------------------------------------------------

def test_zero_shares_sum_to_zero_and_none_is_constant():
    """ABY3-PRSS-1: alpha_0 + alpha_1 + alpha_2 = 0 mod 2^64 on every element, call after call;
    each alpha_i varies (no share is constant, none is zero) and the next call gives fresh values."""
    pr = prss_trio()
    for _ in range(3):
        z = [q.zero(SHAPE) for q in pr]
        assert all(a.dtype == U64 and a.shape == SHAPE for a in z)
        assert np.array_equal(z[0] + z[1] + z[2], np.zeros(SHAPE, U64))
        for a in z:
            assert len(np.unique(a)) == a.size  # 64 distinct words: not constant, not structured
    again = [q.zero(SHAPE) for q in pr]
    assert not np.any(again[0] == z[0])  # fresh randomness per call


def test_boolean_zero_shares_xor_to_zero():
    """ABY3-PRSS-1: beta_0 ^ beta_1 ^ beta_2 = 0, each beta_i non-constant."""
    pr = prss_trio()
    z = [q.zero_xor(SHAPE) for q in pr]
    assert np.array_equal(z[0] ^ z[1] ^ z[2], np.zeros(SHAPE, U64))
    assert all(len(np.unique(a)) == a.size for a in z)


def test_pairwise_draws_agree_between_key_holders_only():
    """ABY3-PRSS-1: party i and i+1 draw the same words from their common key k_{i+1};
    the three pairwise streams differ from each other and from the public coins."""
    pr = prss_trio()
    pairs = {}
    for i in range(3):
        j = (i + 1) % 3
        a, b = pr[i].pair(j, SHAPE), pr[j].pair(i, SHAPE)
        assert np.array_equal(a, b)
        pairs[(i, j)] = a
    pub = [q.public(SHAPE) for q in pr]
    assert np.array_equal(pub[0], pub[1]) and np.array_equal(pub[1], pub[2])
    streams = list(pairs.values()) + [pub[0]]
    for s in range(len(streams)):
        for t in range(s + 1, len(streams)):
            assert not np.any(streams[s] == streams[t])


def test_random_sharing_is_replicated_and_third_key_is_out_of_reach():
    """ABY3-PRSS-1: rand() gives a replicated sharing (party i's second word is party i+1's
    first); a party cannot draw from the key it does not hold, nor pair with itself."""
    pr = prss_trio()
    r = [q.rand(SHAPE) for q in pr]
    for i in range(3):
        assert np.array_equal(r[i][1], r[(i + 1) % 3][0])
    for i in range(3):
        assert pr[i].key_with((i - 1) % 3) == i and pr[i].key_with((i + 1) % 3) == (i + 1) % 3
        with pytest.raises(ValueError):
            pr[i].draw((i + 2) % 3, SHAPE)
        with pytest.raises(ValueError):
            pr[i].key_with(i)


def test_different_setups_give_different_streams():
    """ABY3-PRSS-1: another key setup draws other words (the keys, not the party index, drive the streams)."""
    a, b = prss_trio(5), prss_trio(6)
    assert not np.any(a[0].zero(SHAPE) == b[0].zero(SHAPE))


# ---- view audit conditioned on the receiver's knowledge ------------------------------------

RUNS = 16
S0 = np.zeros(SHAPE)
S1 = np.linspace(-3000.0, 3000.0, int(np.prod(SHAPE))).reshape(SHAPE)
_session = [10**6]


def _coins(seed):
    g = np.random.default_rng(seed)
    return lambda shape: g.integers(0, 2**64 - 1, size=shape, dtype=np.uint64, endpoint=True)


def conditioned_view(fn, secret, party: int, run: int) -> list[np.ndarray]:
    """Messages party `party` receives inside fn(p, x, y), x = secret, y = secret reversed.

    Fixed across runs: party's shares (x_i, x_{i+1}), (y_i, y_{i+1}), its keys k_i, k_{i+1},
    k_pub and its private coins. Varied by `run`: the key k_{i+2}, the other parties' coins."""
    i = party
    fxp = Fxp()
    keys = list(setup_keys(11))
    keys[(i + 2) % 3] = setup_keys(1000 + run)[(i + 2) % 3]
    known = np.random.default_rng(12)
    comps = []
    for v in (secret, secret[::-1]):
        c = [None, None, None]
        c[i], c[(i + 1) % 3] = (known.integers(0, 2**64 - 1, SHAPE, dtype=np.uint64, endpoint=True) for _ in range(2))
        c[(i + 2) % 3] = fxp.encode(v) - c[i] - c[(i + 1) % 3]
        comps.append(c)
    _session[0] += 1
    session = _session[0]
    transport = InMemoryTransport()
    parties = []
    for j in range(3):
        pj = Party(j, Network(j, transport, j == i), PRSS(j, keys[j], keys[(j + 1) % 3], keys[3]), fxp, session)
        pj.private = _coins(77 if j == i else 5000 + 10 * run + j)  # the receiver's coins are fixed
        parties.append(pj)
    errors = []

    def go(j):
        p = parties[j]
        x, y = (AShare(c[j], c[(j + 1) % 3], session) for c in comps)
        try:
            with p.net.scope("op"):
                fn(p, x, y)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
            transport.abort.set()

    threads = [threading.Thread(target=go, args=(j,)) for j in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [arr for tag, _, arr in parties[i].net.view if tag.startswith("op")]


def chi2_z(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample chi-square on 256 byte values, as a z-score (df = bins - 1)."""
    ha = np.bincount(a, minlength=256).astype(float)
    hb = np.bincount(b, minlength=256).astype(float)
    ka, kb = np.sqrt(hb.sum() / ha.sum()), np.sqrt(ha.sum() / hb.sum())
    keep = (ha + hb) > 0
    stat = np.sum((ka * ha[keep] - kb * hb[keep]) ** 2 / (ha[keep] + hb[keep]))
    df = max(int(keep.sum()) - 1, 1)
    return float((stat - df) / np.sqrt(2 * df))


def audit(fn, party: int) -> float:
    """Largest z over message positions: the bytes of message k over RUNS runs, secret S0 vs S1."""
    views = {}
    for s, secret in enumerate((S0, S1)):
        views[s] = [conditioned_view(fn, secret, party, run + 100 * s) for run in range(RUNS)]
    counts = {len(v) for vs in views.values() for v in vs}
    assert len(counts) == 1  # the same number of messages in every run (data-independent protocol)
    worst = -np.inf
    for k in range(counts.pop()):
        a = np.concatenate([np.ascontiguousarray(v[k]).view(np.uint8).ravel() for v in views[0]])
        b = np.concatenate([np.ascontiguousarray(v[k]).view(np.uint8).ravel() for v in views[1]])
        worst = max(worst, chi2_z(a, b))
    return worst


def mul_without_mask(p, x, y):
    """Control: ABY3's multiplication with the zero share alpha_i left out (a bilinear leak)."""
    with p.net.scope("mul"):
        return reshare(p, x.a * y.a + x.a * y.b + x.b * y.a)


PROTOCOLS = {
    "mul": lambda p, x, y: arith.mul(p, x, y),
    "fxp_mul": lambda p, x, y: arith.fxp_mul(p, x, y),
    "truncate": lambda p, x, y: arith.truncate(p, x),
    "a2b": lambda p, x, y: B.a2b(p, x),
    "msb": lambda p, x, y: B.msb(p, x),
    "inject": lambda p, x, y: B.inject(p, B.msb(p, x), y),
    "relu": lambda p, x, y: NL.relu(p, x),
    "quad": lambda p, x, y: NL.quad(p, x),
    "exp": lambda p, x, y: NL.exp_neg(p, x, iters=4),
    "reciprocal": lambda p, x, y: NL.reciprocal(p, arith.add_public(p, NL.relu(p, x), 1.0), iters=1),
}
# every protocol against each receiving party would triple the time: the receiver rotates
AUDITED = [(name, k % 3) for k, name in enumerate(sorted(PROTOCOLS))]


@pytest.mark.parametrize("name,party", AUDITED)
def test_view_given_receivers_knowledge_is_independent_of_the_secret(name, party):
    """ABY3-VIEW-2: with the receiver's shares, keys and coins fixed, its messages have the same
    distribution for two secrets (no bilinear or higher leak)."""
    assert audit(PROTOCOLS[name], party) < 5.0


@pytest.mark.parametrize("party", [0, 1, 2])
def test_conditioned_audit_detects_a_missing_zero_share(party):
    """Control for ABY3-VIEW-2: a multiplication without its zero-sharing mask is caught for
    every receiving party (the message is then a fixed bilinear function of the secret)."""
    assert audit(mul_without_mask, party) > 50.0
    assert audit(PROTOCOLS["mul"], party) < 5.0  # and the real multiplication passes
