"""OpenFHE CKKS (RNS) per-operation timings, run by refimpl.bench.peers in the openfhe venv.

Reads a config JSON on stdin, prints one JSON document. Standalone: needs openfhe and numpy.
Chain: a log_q0-bit first prime + `levels` log_qi-bit scaling primes (FIXEDMANUAL rescaling,
so limbs = levels + 1), HYBRID key switching with `dnum` digits. With security "128" the
digits are raised until OpenFHE's own HEStd_128_classic check accepts Q*P; if none passes,
the same Q runs under HEStd_NotSet and the notes say so.
"""

import json
import math
import re
import statistics
import sys
import time

import numpy as np
import openfhe as of


def median_s(fn, reps):
    """Median seconds of `reps` timed calls of fn() after one untimed warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_context(cfg, security, dnum):
    """GenCryptoContext for the requested chain at `security` with `dnum` digits (0 = OpenFHE's default)."""
    p = of.CCParamsCKKSRNS()
    p.SetMultiplicativeDepth(cfg["levels"])
    p.SetFirstModSize(cfg["log_q0"])
    p.SetScalingModSize(cfg["log_qi"])
    p.SetRingDim(cfg["N"])
    p.SetBatchSize(cfg["N"] // 2)
    p.SetScalingTechnique(of.FIXEDMANUAL)
    p.SetKeySwitchTechnique(of.HYBRID)
    p.SetSecurityLevel(security)
    if dnum:
        p.SetNumLargeDigits(dnum)
    return of.GenCryptoContext(p)


def short(error):
    """OpenFHE's exception text without its source-file prefix."""
    return re.sub(r"^.*?l\.\d+:\w+\(\): ", "", str(error).strip().splitlines()[0])


def context_for(cfg, notes):
    """The context OpenFHE accepts: (cc, security label), trying dnum values in order.

    OpenFHE refuses some dnum for a chain (towers that do not split evenly, or its own P
    estimate failing), so each level tries every dnum until one is accepted.
    """
    limbs = cfg["levels"] + 1
    digits = [cfg["dnum"]] if cfg.get("dnum") else [0, *range(2, limbs + 1)]
    levels = [("HEStd_128_classic", of.HEStd_128_classic)] if cfg.get("security", "128") == "128" else []
    for label, security in [*levels, ("HEStd_NotSet", of.HEStd_NotSet)]:
        errors = []
        for dnum in digits:
            try:
                return make_context(cfg, security, dnum), label
            except Exception as e:  # OpenFHE raises RuntimeError for every rejected parameter set
                errors.append(short(e))
        notes.append(f"OpenFHE rejected {label} for every dnum in {digits}, e.g. {errors[0]!r}")
    sys.exit(f"OpenFHE accepted no dnum for N={cfg['N']}, {limbs} limbs: {notes[-1]}")


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


def chain_bits(cc):
    """(log2 Q, number of P primes, their bits, effective dnum) from the serialized parameters.

    The Python API exposes Q only; P follows OpenFHE's rule for HYBRID key switching
    (CryptoParametersRNS::PrecomputeCRTTables): the Q primes are cut into dnum digits of
    ceil(limbs/dnum) primes, and P has ceil(max digit bits / auxBits) primes of auxBits bits.
    """
    params = json.loads(of.Serialize(cc, of.JSON))
    elp = next(find(params, "elp"))
    primes = [int(cm["v"]) for cm in find(elp, "cm") if isinstance(cm["v"], int)]  # the towers' q_i
    dnum, aux_bits = next(find(params, "dnum")), next(find(params, "ab"))
    alpha = math.ceil(len(primes) / dnum)
    digit_bits = [sum(math.log2(q) for q in primes[i:i + alpha]) for i in range(0, len(primes), alpha)]
    p_primes = math.ceil(max(math.ceil(b) for b in digit_bits) / aux_bits)
    return sum(math.log2(q) for q in primes), p_primes, aux_bits, dnum


def main():
    cfg = {"N": 1 << 13, "log_q0": 60, "log_qi": 40, "levels": 2, "dnum": None, "reps": 5,
           "threads": None, "security": "128"}
    cfg.update(json.load(sys.stdin))
    n, reps, slots = cfg["N"], cfg["reps"], cfg["N"] // 2
    notes = ["FIXEDMANUAL rescaling, HYBRID key switching",
             "ntt: not exposed by OpenFHE's Python API (omitted)"]
    cc, security = context_for(cfg, notes)
    for feature in (of.PKE, of.KEYSWITCH, of.LEVELEDSHE):
        cc.Enable(feature)
    try:
        log_q, p_primes, p_bits, dnum = chain_bits(cc)
        log_qp = log_q + p_primes * p_bits
        notes.append(f"dnum={dnum}; P = {p_primes} primes of ~{p_bits} bits by OpenFHE's HYBRID rule")
    except (StopIteration, KeyError, TypeError, ValueError) as e:
        log_q = log_qp = p_primes = None
        notes.append(f"log_q, log_qp unknown: could not read OpenFHE's parameters ({e!r})")

    keys = cc.KeyGen()
    cc.EvalMultKeyGen(keys.secretKey)
    cc.EvalRotateKeyGen(keys.secretKey, [1])
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, slots), rng.uniform(-1, 1, slots)
    pt_y = cc.MakeCKKSPackedPlaintext(y.tolist())
    c1 = cc.Encrypt(keys.publicKey, cc.MakeCKKSPackedPlaintext(x.tolist()))
    c2 = cc.Encrypt(keys.publicKey, pt_y)
    prod = cc.EvalMult(c1, c2)  # top level, scale Delta^2; Rescale drops q_L: scale Delta^2 / q_L

    def decode(ct):
        pt = cc.Decrypt(keys.secretKey, ct)
        pt.SetLength(slots)
        return np.array(pt.GetRealPackedValue())

    err = float(np.max(np.abs(decode(cc.Rescale(prod)) - x * y)))
    rot_err = float(np.max(np.abs(decode(cc.EvalRotate(c1, 1)) - np.roll(x, -1))))
    if rot_err > 1e-3:
        notes.append(f"rotation check failed: max error {rot_err:.3g}")
    xs = x.tolist()
    ops = {
        "encode+encrypt": lambda: cc.Encrypt(keys.publicKey, cc.MakeCKKSPackedPlaintext(xs)),
        "add": lambda: cc.EvalAdd(c1, c2),
        "pt-ct mul": lambda: cc.EvalMult(c1, pt_y),
        "mul+relin": lambda: cc.EvalMult(c1, c2),
        "rescale": lambda: cc.Rescale(prod),
        "rotate": lambda: cc.EvalRotate(c1, 1),
        "decrypt+decode": lambda: decode(c1),
    }
    sizes = {
        "ciphertext": len(of.Serialize(c1, of.BINARY)),
        "relin_key": len(of.SerializeEvalMultKeyString(of.BINARY, "")),
        "rotation_key": len(of.SerializeEvalAutomorphismKeyString(of.BINARY, "")),
    }
    notes.append("sizes: OpenFHE BINARY serialization (cereal), no compression")
    if p_primes is not None:  # the relin key holds dnum pairs of polynomials over Q*P: check P's size
        p_limbs = round(sizes["relin_key"] / (dnum * 2 * n * 8)) - (cfg["levels"] + 1)
        if p_limbs != p_primes:
            notes.append(f"relin key size implies {p_limbs} P primes, not {p_primes}")
    print(json.dumps({
        "peer": "openfhe", "version": of.__version__, "N": cc.GetRingDimension(),
        "limbs": cfg["levels"] + 1, "log_q": log_q, "log_qp": log_qp, "security": security,
        "ops": {name: median_s(fn, reps) for name, fn in ops.items()},
        "sizes": sizes, "max_err_log2": math.log2(err) if err > 0 else None,
        "threads": cfg["threads"], "notes": notes,
    }))


if __name__ == "__main__":
    main()
