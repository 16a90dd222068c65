"""Microsoft SEAL CKKS per-operation timings through tenseal.sealapi, run by refimpl.bench.peers.

Reads a config JSON on stdin, prints one JSON document. Standalone: needs tenseal and numpy.
Chain: [log_q0] + [log_qi] * levels for Q, plus one special prime P of log_q0 bits (SEAL's
key switching uses one digit per limb and a single special prime). SEAL runs each operation
on one thread whatever OMP_NUM_THREADS says.
"""

import json
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import tenseal
import tenseal.sealapi as seal


def median_s(fn, reps):
    """Median seconds of `reps` timed calls of fn() after one untimed warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def saved_bytes(obj):
    """Bytes of obj.save() (SEAL's default serialization, zstd-compressed)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "obj.bin")
        obj.save(path)
        return os.path.getsize(path)


def context_for(cfg, bits, notes):
    """A SEALContext SEAL accepts for `bits`, and the security level it accepted."""
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(cfg["N"])
    parms.set_coeff_modulus(seal.CoeffModulus.Create(cfg["N"], bits))
    if cfg.get("security", "128") == "128":
        ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
        if ctx.parameters_set():
            return ctx, "tc128"
        notes.append(f"SEAL's 128-bit check rejected log2(QP)={sum(bits)} at N={cfg['N']} "
                     f"({ctx.parameters_error_name()}); ran under sec_level NONE")
    ctx = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.NONE)
    if not ctx.parameters_set():
        sys.exit(f"SEAL rejected the parameters: {ctx.parameters_error_message()}")
    return ctx, "none"


def main():
    cfg = {"N": 1 << 13, "log_q0": 60, "log_qi": 40, "levels": 2, "dnum": None, "reps": 5,
           "threads": None, "security": "128"}
    cfg.update(json.load(sys.stdin))
    n, reps, slots, limbs = cfg["N"], cfg["reps"], cfg["N"] // 2, cfg["levels"] + 1
    bits = [cfg["log_q0"]] + [cfg["log_qi"]] * cfg["levels"] + [cfg["log_q0"]]
    notes = [f"Q as asked plus one {cfg['log_q0']}-bit special prime P "
             f"(SEAL key switching: dnum = limbs = {limbs}); config dnum ignored",
             "SEAL is single-threaded per operation"]
    ctx, security = context_for(cfg, bits, notes)
    keygen = seal.KeyGenerator(ctx)
    sk = keygen.secret_key()
    pk = seal.PublicKey()
    keygen.create_public_key(pk)
    rk = seal.RelinKeys()
    keygen.create_relin_keys(rk)
    gk = seal.GaloisKeys()
    galois_elt = ctx.key_context_data().galois_tool().get_elt_from_step(1)  # 3: rotate left by 1
    keygen.create_galois_keys([galois_elt], gk)
    encoder, ev = seal.CKKSEncoder(ctx), seal.Evaluator(ctx)
    encryptor, decryptor = seal.Encryptor(ctx, pk), seal.Decryptor(ctx, sk)
    scale = 2.0 ** cfg["log_qi"]
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, slots), rng.uniform(-1, 1, slots)
    xs, ys = x.tolist(), y.tolist()

    def encode(values):
        pt = seal.Plaintext()
        encoder.encode(values, scale, pt)
        return pt

    def encrypt(values):
        ct = seal.Ciphertext(ctx)
        encryptor.encrypt(encode(values), ct)
        return ct

    def decrypt(ct):
        pt = seal.Plaintext()
        decryptor.decrypt(ct, pt)
        return np.array(encoder.decode_double(pt))

    def binary(op):
        """A fresh destination ciphertext for an out-of-place evaluator call, as SEAL users write it."""
        def run(*args):
            out = seal.Ciphertext(ctx)
            op(*args, out)
            return out
        return run

    pt_y, c1, c2 = encode(ys), encrypt(xs), encrypt(ys)
    mul_relin = binary(lambda a, b, out: (ev.multiply(a, b, out), ev.relinearize_inplace(out, rk)))
    prod = mul_relin(c1, c2)  # scale Delta^2, level L
    rescale = binary(ev.rescale_to_next)
    rotate = binary(lambda a, out: ev.rotate_vector(a, 1, gk, out))
    err = float(np.max(np.abs(decrypt(rescale(prod)) - x * y)))
    rot_err = float(np.max(np.abs(decrypt(rotate(c1)) - np.roll(x, -1))))
    if rot_err > 1e-3:
        notes.append(f"rotation check failed: max error {rot_err:.3g}")
    c1_coeff = binary(ev.transform_from_ntt)(c1)  # coefficient form, 2 polynomials x limbs
    to_ntt = binary(ev.transform_to_ntt)
    ops = {
        "ntt": lambda: to_ntt(c1_coeff),
        "encode+encrypt": lambda: encrypt(xs),
        "add": lambda: binary(ev.add)(c1, c2),
        "pt-ct mul": lambda: binary(ev.multiply_plain)(c1, pt_y),
        "mul+relin": lambda: mul_relin(c1, c2),
        "rescale": lambda: rescale(prod),
        "rotate": lambda: rotate(c1),
        "decrypt+decode": lambda: decrypt(c1),
    }
    timings = {name: median_s(fn, reps) for name, fn in ops.items()}
    timings["ntt"] /= 2 * limbs
    notes.append(f"ntt: Evaluator.transform_to_ntt of a ciphertext / (2 polys x {limbs} limbs), "
                 "per limb, includes the output allocation")
    sizes = {"ciphertext": saved_bytes(c1), "relin_key": saved_bytes(rk), "rotation_key": saved_bytes(gk)}
    raw_ct, raw_key = 2 * limbs * n * 8, limbs * 2 * (limbs + 1) * n * 8
    notes.append(f"sizes: SEAL save() with its default zstd compression; uncompressed "
                 f"ciphertext {raw_ct} B, each switching key {raw_key} B")
    print(json.dumps({
        "peer": "seal", "version": f"tenseal {tenseal.__version__}", "N": n, "limbs": limbs,
        "log_q": sum(bits[:-1]), "log_qp": sum(bits), "security": security,
        "ops": timings, "sizes": sizes, "max_err_log2": math.log2(err) if err > 0 else None,
        "threads": cfg["threads"], "notes": notes,
    }))


if __name__ == "__main__":
    main()
