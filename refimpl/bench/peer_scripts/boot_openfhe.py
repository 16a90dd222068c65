"""OpenFHE CKKS bootstrapping (EvalBootstrap): time, precision, memory; run by refimpl.bench.peers.

Reads a config JSON on stdin, prints one JSON document. Standalone: needs openfhe and numpy.
OpenFHE's own settings, as in its examples: FLEXIBLEAUTO rescaling, a 60-bit first prime,
59-bit scaling primes, depth = levels_after + GetBootstrapDepth(level_budget, secret).
Precision over slots of one bootstrap of uniform inputs in [-1, 1]: bits = -log2 |err|.
"""

import json
import math
import re
import resource
import statistics
import sys
import time

import numpy as np
import openfhe as of

SECRETS = {"uniform": of.UNIFORM_TERNARY, "sparse": of.SPARSE_TERNARY}
SECURITY = {"none": of.HEStd_NotSet, "128": of.HEStd_128_classic}


def peak_rss_mib():
    """Peak resident set size of this process so far, MiB: VmHWM (ru_maxrss would also count the
    parent's memory at fork, since Linux keeps it across exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def precision_bits(got, want):
    """Per-slot bits -log2|got - want| summarized as min, mean, median (errors floored at 2^-60)."""
    bits = -np.log2(np.maximum(np.abs(got - want), 2.0**-60))
    return {"min": float(bits.min()), "mean": float(bits.mean()), "median": float(np.median(bits))}


def find(obj, key):
    """Yield every value stored under `key` in nested JSON, depth first."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from find(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from find(v, key)


def log2_q(cc):
    """log2 Q from the towers' primes (cc.GetModulus() overflows a float above 1024 bits)."""
    elp = next(find(json.loads(of.Serialize(cc, of.JSON)), "elp"))
    return sum(math.log2(int(cm["v"])) for cm in find(elp, "cm") if isinstance(cm["v"], int))


def main():
    cfg = {"N": 1 << 12, "slots": None, "level_budget": [4, 4], "levels_after": 10,
           "secret": "uniform", "security": "none", "reps": 3, "threads": None,
           "scale_bits": 59, "first_mod_bits": 60}
    cfg.update(json.load(sys.stdin))
    n, budget = cfg["N"], list(cfg["level_budget"])
    slots = cfg["slots"] or n // 2
    secret = SECRETS[cfg["secret"]]
    depth = cfg["levels_after"] + of.CryptoContext.GetBootstrapDepth(budget, secret)
    p = of.CCParamsCKKSRNS()
    p.SetSecretKeyDist(secret)
    p.SetSecurityLevel(SECURITY[cfg["security"]])
    p.SetRingDim(n)
    p.SetScalingTechnique(of.FLEXIBLEAUTO)
    p.SetScalingModSize(cfg["scale_bits"])
    p.SetFirstModSize(cfg["first_mod_bits"])
    p.SetMultiplicativeDepth(depth)
    p.SetBatchSize(slots)
    try:
        cc = of.GenCryptoContext(p)
    except Exception as e:  # e.g. log2 Q above the 128-bit bound for N
        reason = re.sub(r"^.*?l\.\d+:\w+\(\): ", "", str(e).strip().splitlines()[0])
        sys.exit(f"OpenFHE refused N={n}, depth {depth}, security {cfg['security']}: {reason}")
    for feature in (of.PKE, of.KEYSWITCH, of.LEVELEDSHE, of.ADVANCEDSHE, of.FHE):
        cc.Enable(feature)
    t0 = time.perf_counter()
    cc.EvalBootstrapSetup(budget, [0, 0], slots)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    keys = cc.KeyGen()
    cc.EvalMultKeyGen(keys.secretKey)
    cc.EvalBootstrapKeyGen(keys.secretKey, slots)
    keygen_s = time.perf_counter() - t0

    x = np.random.default_rng(3).uniform(-1, 1, slots)
    ct = cc.Encrypt(keys.publicKey, cc.MakeCKKSPackedPlaintext(x.tolist(), 1, depth - 1, None, slots))
    times, out = [], None
    for _ in range(cfg["reps"] + 1):  # the first call is the warm-up
        t0 = time.perf_counter()
        out = cc.EvalBootstrap(ct)
        times.append(time.perf_counter() - t0)
    pt = cc.Decrypt(keys.secretKey, out)
    pt.SetLength(slots)
    got = np.array(pt.GetRealPackedValue())
    print(json.dumps({
        "peer": "openfhe", "version": of.__version__, "op": "EvalBootstrap",
        "N": cc.GetRingDimension(), "slots": slots, "limbs": depth + 1, "depth": depth,
        "log_q": log2_q(cc), "level_budget": budget,
        "levels_after": cfg["levels_after"], "output_level": out.GetLevel(), "secret": cfg["secret"],
        "security": "HEStd_128_classic" if cfg["security"] == "128" else "HEStd_NotSet",
        "median_s": statistics.median(times[1:]), "reps": cfg["reps"],
        "precision_bits": precision_bits(got, x), "keygen_s": keygen_s, "setup_s": setup_s,
        "peak_rss_mib": peak_rss_mib(), "threads": cfg["threads"],
        "notes": ["FLEXIBLEAUTO, HYBRID key switching at OpenFHE's default dnum",
                  "keygen_s: KeyGen + EvalMultKeyGen + EvalBootstrapKeyGen",
                  "precision from the last timed bootstrap; median_s excludes decryption",
                  "output_level: OpenFHE's count of levels consumed (depth - output_level remain; "
                  "FLEXIBLEAUTO's pending rescale takes one of them)"],
    }))


if __name__ == "__main__":
    main()
