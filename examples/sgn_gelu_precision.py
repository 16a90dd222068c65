"""NEXUS Sgn and GELU: their error over the valid input range, as approximations and encrypted.

Sgn(x) = f4(f4(g4(g4(x)))) (16 levels) must be within 2^-16 of sign(x) for 0.0174 <= |x| <= 1;
the 4-piece GELU (18 levels: three Sgn segment bits, P on [-4, -1.95], Q on (-1.95, 3], x above)
is valid on [-13, 12]. Two errors are shown per function: the approximation's own (float64
model against the true function) and the CKKS error (encrypted result against the model).
A plot (if matplotlib is installed: pip install matplotlib), else a printed table.

Run: python examples/sgn_gelu_precision.py [--fast] [--plot FILE.png]
     (--fast: ring N = 2^10 and a coarser grid; both rings are insecure toy rings)
Reference: NEXUS (Zhang et al., NDSS 2025) §2.4 and §3.3; spec/nexus.md NEXUS-SGN-*, NEXUS-GELU-*.
"""

import argparse

import numpy as np

from refimpl.bert.functional import gelu_erf
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.nexus.gelu import VALID_RANGE, gelu, gelu_plain
from refimpl.nexus.sign import MIN_ABS_INPUT, sgn, sgn_plain
from refimpl.ring.sampling import RandomSource


def table(name: str, x: np.ndarray, errors: dict[str, np.ndarray], bins: int = 8) -> list[dict]:
    """Max error per bin of x, for each error curve; printed as one line per bin."""
    edges = np.linspace(x.min(), x.max(), bins + 1)
    rows = []
    print(f"{name}: max |error| per input bin")
    print(f"  {'x from':>8} {'to':>8} " + " ".join(f"{k:>22}" for k in errors))
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (x >= lo) & (x <= hi)
        row = {"lo": lo, "hi": hi, **{k: float(np.max(np.abs(e[sel]))) for k, e in errors.items()}}
        rows.append(row)
        print(f"  {lo:8.3f} {hi:8.3f} " + " ".join(
            f"{row[k]:10.2e} ({-np.log2(row[k] + 1e-300):5.1f} bits)" for k in errors))
    return rows


def main(N: int = 2048, fast: bool = False, plot: str | None = None) -> dict:
    params = Parameters.create(N=N, levels=19, dnum=4, insecure=True)
    print(params.security_note)
    keygen = KeyGenerator(params, RandomSource.insecure_seeded(1))
    sk = keygen.secret_key()
    enc, ev = Encoder(params), Evaluator(params, keygen.evaluation_keys(sk))
    E, D = Encryptor(keygen.public_key(sk), RandomSource.insecure_seeded(2)), Decryptor(sk)
    out = {}

    # Sgn on [-1, 1], excluding the gap |x| < 0.0174 where no odd polynomial can be near sign
    xs = np.linspace(-1, 1, params.slots)
    xs = xs[np.abs(xs) >= MIN_ABS_INPUT]
    xs = np.concatenate([xs, np.zeros(params.slots - xs.size)])  # pad to the slot count
    ct = sgn(ev, E.encrypt(enc.encode(xs)))                      # level L -> L - 16
    z = enc.decode(D.decrypt(ct)).real
    valid = np.abs(xs) >= MIN_ABS_INPUT
    x, model = xs[valid], sgn_plain(xs[valid])
    dense = np.linspace(MIN_ABS_INPUT, 1, 20_000 if fast else 1_000_000)
    out["sgn_model_bits"] = float(-np.log2(np.max(np.abs(sgn_plain(dense) - 1))))
    out["sgn_encrypted_bits"] = float(-np.log2(np.max(np.abs(z[valid] - np.sign(x)))))
    print(f"Sgn: levels used {params.L - ct.level}; model vs sign: {out['sgn_model_bits']:.2f} bits "
          f"on [{MIN_ABS_INPUT}, 1] (spec: >= 16); encrypted vs sign: {out['sgn_encrypted_bits']:.1f} bits")
    sgn_err = {"model - sign": model - np.sign(x), "encrypted - model": z[valid] - model}
    out["sgn_table"] = table("Sgn", x, sgn_err)

    # GELU over the valid range [-13, 12]
    xg = np.linspace(*VALID_RANGE, params.slots)
    ctg = gelu(ev, E.encrypt(enc.encode(xg)))                    # level L -> L - 18
    zg = enc.decode(D.decrypt(ctg)).real
    mg = gelu_plain(xg)
    out["gelu_model_max_err"] = float(np.max(np.abs(mg - gelu_erf(xg))))
    out["gelu_encrypted_bits"] = float(-np.log2(np.max(np.abs(zg - mg))))
    print(f"GELU: levels used {params.L - ctg.level}; model vs erf-GELU max {out['gelu_model_max_err']:.3g} "
          f"(the 4-piece approximation's own error); encrypted vs model {out['gelu_encrypted_bits']:.1f} bits")
    gelu_err = {"model - erf GELU": mg - gelu_erf(xg), "encrypted - model": zg - mg}
    out["gelu_table"] = table("GELU", xg, gelu_err, bins=10)

    if plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed (pip install matplotlib): tables only")
        else:
            fig, axes = plt.subplots(1, 2, figsize=(11, 4))
            for ax, (title, xx, errs) in zip(axes, [("Sgn", x, sgn_err), ("GELU", xg, gelu_err)]):
                for k, e in errs.items():
                    ax.semilogy(xx, np.abs(e) + 1e-18, ".", ms=1.5, label=k)
                ax.set_title(f"NEXUS {title}: |error|, N = {N}")
                ax.set_xlabel("x")
                ax.legend()
            fig.tight_layout()
            fig.savefig(plot, dpi=120)
            print(f"plot written to {plot}")
            out["plot"] = plot
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="ring N = 2^10 and a coarse grid (tests)")
    ap.add_argument("--plot", default="sgn_gelu_precision.png", help="PNG path (needs matplotlib); '' for none")
    args = ap.parse_args()
    main(N=1024 if args.fast else 2048, fast=args.fast, plot=args.plot or None)
