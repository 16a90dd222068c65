"""CKKS precision per level and after each bootstrap (ours): `refimpl experiment precision-levels`.

A measurement of the library, not a paper algorithm. Slots x uniform in [-1, 1] are encrypted at
the bootstrapper's output level; each step multiplies the ciphertext by a fresh encryption of
random signs (+-1, so |x| stays the same and every step is one ciphertext product, relinearized
and rescaled: one level); at level 0 the ciphertext is bootstrapped and the steps go on, for
`cycles` bootstraps. After every step and every bootstrap the ciphertext is decrypted and its
precision measured against the float64 product (refimpl.ckks.precision: -log2 |error| per slot,
min / mean / median over the slots). A fresh encryption at each level is measured too (encoding
and encryption noise alone).

The chain mirrors the 128-bit `128-2^16-dense19` preset (19 levels of 40-bit primes after
bootstrapping, a dense secret with an h = 32 secret around ModRaise, 35-bit SlotsToCoeffs primes)
at a small ring, N = 2^13 by default: there log2(PQ) is far above the 128-bit bound, so the run
is INSECURE (it measures precision, not security); the JSON records parameters and security note.
A few minutes on one core.
"""

from __future__ import annotations

import time

import numpy as np

from ..ckks import Evaluator
from ..ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_parameters
from ..ckks.context import Context
from ..ckks.precision import precision_bits
from ..progress import Progress, or_silent

CHAIN = dict(levels_after=19, encapsulation_h=32, log_s2c=35, num_p=3, ks_slack_bits=20)  # BOOTSTRAP_PRESETS["128-2^16-dense19"] without N


def context(log_n: int = 13, seed: int = 0) -> Context:
    """A Context with a Bootstrapper on the dense19-shaped chain at N = 2^log_n (insecure below 2^16)."""
    params, resolved = bootstrap_parameters(2**log_n, insecure=log_n < 16, **CHAIN)
    probe = Bootstrapper(Evaluator(params), resolved)  # no keys: it only lists the Galois elements it needs
    ctx = Context.create(params, insecure_seed=seed, elements=probe.galois_elements(), element_levels=probe.galois_levels(),
                         encapsulation_h=resolved.encapsulation_h)
    ctx.bootstrapper = Bootstrapper(ctx.evaluator, resolved, encapsulation=ctx.encapsulation)
    return ctx


def measure(log_n: int = 13, cycles: int = 3, seed: int = 0, progress: Progress | None = None) -> dict:
    """Rows of (step, bootstraps so far, level, precision bits) along the chain; see the module docstring.
    progress: refimpl.progress's callback ("bootstraps" done of `cycles`)."""
    say = or_silent(progress)
    t0 = time.perf_counter()
    ctx = context(log_n, seed)
    keygen_s = time.perf_counter() - t0
    p, top = ctx.params, ctx.usable_level
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, p.slots)
    fresh = [{"level": lvl, "precision_bits": precision_bits(ctx.decrypt(ctx.encrypt(x, level=lvl)), x)}
             for lvl in range(top, -1, -1)]
    ct, rows, step, boots, boot_s = ctx.encrypt(x), [], 0, 0, []

    def record(event: str) -> None:
        rows.append({"step": step, "bootstraps": boots, "event": event, "level": ct.level,
                     "precision_bits": precision_bits(ctx.decrypt(ct), x)})

    record("encrypt")
    while True:
        while ct.level > 0:
            signs = rng.choice([-1.0, 1.0], p.slots)
            ct, x, step = ctx.multiply(ct, ctx.encrypt(signs, level=ct.level)), x * signs, step + 1
            record("multiply")
        if boots == cycles:
            break
        say("bootstraps", boots, cycles)
        t = time.perf_counter()
        ct = ctx.bootstrap(ct)
        boot_s.append(time.perf_counter() - t)
        boots += 1
        say("bootstraps", boots, cycles)
        record("bootstrap")
    return {
        "what": "precision (bits: -log2 |error| per slot, min / mean / median over slots) of x * signs along the "
                "chain: one ciphertext product per level, a bootstrap at level 0; fresh: a new encryption per level",
        "N": p.N, "slots": p.slots, "log_qp": round(p.log_qp, 1), "insecure": p.insecure, "security": p.security_note,
        "chain": {"shape": "128-2^16-dense19 at a small ring", **CHAIN, "log_qi": 40, "log_q0": 52,
                  "scale_bits": round(float(np.log2(p.scale)), 1)},
        "output_level": top, "cycles": cycles, "seed": seed, "keygen_s": round(keygen_s, 2),
        "bootstrap_s": [round(s, 2) for s in boot_s], "fresh": fresh, "rows": rows,
    }
