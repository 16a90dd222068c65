"""SecretFlow SPU 0.9.5 (ABY3, FM64, f = 18) on the items of `refimpl bench aby3`.

Runs under the SPU venv's interpreter (Python 3.11, numpy < 2), never inside refimpl.
stdin: JSON {"inputs": npz path, "outputs": npz path, "items": [{"name", "n", "heads",
"inv_f": {...}, "c", "quad", "gelu_P", "gelu_Q"}]}; the npz holds "<name>/<i>" input
arrays. Writes each item's revealed output to the output npz as "<name>" and prints one
JSON line {name: {"bytes", "send_actions", "wall_s"}}: bytes are SPU's own "Link details"
(enable_pphlo_profile on for every party), summed over the three parties; send_actions is
the largest per-party count. Errors are computed by refimpl against its float64 reference.
"""

import json
import os
import re
import sys
import tempfile
import threading
import time

import numpy as np
import jax
import jax.numpy as jnp

import spu.api as spu_api
import spu.libspu as libspu
import spu.utils.frontend as spu_fe

LINK_RE = re.compile(r"Link details: total send bytes (\d+), recv bytes (\d+), send actions (\d+), recv actions (\d+)")


class Capture:
    """SPU's C++ runtime prints its profile to fd 1: redirect it to a temp file."""

    def __enter__(self):
        sys.stdout.flush()
        self.tmp = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(1)
        os.dup2(self.tmp.fileno(), 1)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.tmp.seek(0)
        self.text = self.tmp.read().decode("utf-8", "replace")
        self.tmp.close()


def config():
    cfg = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.ABY3, field=libspu.FieldType.FM64, fxp_fraction_bits=18)
    cfg.enable_pphlo_profile = True
    return cfg


def run_3pc(fn, args, cfg):
    names = [f"in{i}" for i in range(len(args))]
    exe, _ = spu_fe.compile(spu_fe.Kind.JAX, fn, args, {}, names, [libspu.Visibility.VIS_SECRET] * len(args),
                            lambda outs: [f"out{i}" for i in range(len(outs))], copts=libspu.CompilerOptions())
    io = spu_api.Io(3, cfg)
    shares = [io.make_shares(np.asarray(a), libspu.Visibility.VIS_SECRET) for a in args]
    desc = libspu.link.Desc()
    for r in range(3):
        desc.add_party(f"p{r}", f"mem{r}")
    results, errors = [None] * 3, []

    def party(rank):
        try:
            rt = spu_api.Runtime(libspu.link.create_mem(desc, rank), cfg)
            for i, s in enumerate(shares):
                rt.set_var(exe.input_names[i], s[rank])
            rt.run(exe)
            results[rank] = [rt.get_var(n) for n in exe.output_names]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    with Capture() as cap:
        t0 = time.perf_counter()
        ths = [threading.Thread(target=party, args=(r,)) for r in range(3)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    out = io.reconstruct([r[0] for r in results])
    links = [tuple(map(int, m)) for m in LINK_RE.findall(cap.text)]
    return np.asarray(out, dtype=np.float64), wall, links


def layer_norm(x, g, b, eps=1e-12):
    mu = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, -1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * g + b


def programs(it):
    c = it["c"]
    q0, q1, q2 = it["quad"]
    inv = it["inv_f"]
    pa, qa = it["gelu_P"], it["gelu_Q"]

    def gelu4(x):  # NEXUS/PUMA 4 pieces: 0 | P on (-4, -1.95] | Q on (-1.95, 3] | x
        b1, b2, b3 = x <= -4.0, x <= -1.95, x <= 3.0
        x2 = x * x
        x4 = x2 * x2
        P = pa[0] + pa[1] * x + pa[2] * x2 + pa[3] * x2 * x
        Q = qa[0] + qa[1] * x + qa[2] * x2 + qa[4] * x4 + qa[6] * x4 * x2
        return jnp.logical_xor(b1, b2) * P + jnp.logical_xor(b2, b3) * Q + jnp.logical_not(b3) * x

    attn = {
        "softmax": lambda s: jax.nn.softmax(s, axis=-1),
        "2quad": lambda s: (s + c) ** 2 / jnp.sum((s + c) ** 2, -1, keepdims=True),
        "2relu": lambda s: jax.nn.relu(s) / jnp.sum(jax.nn.relu(s), -1, keepdims=True),
        "scaling": lambda s: s * (1.0 / it["n"]),
        "softmax-freediv": lambda s: jnp.exp(s - jnp.max(s, -1, keepdims=True)) * inv["softmax-freediv"],
        "2quad-freediv": lambda s: (s + c) ** 2 * inv["2quad-freediv"],
    }
    act = {
        "gelu": lambda t: jax.nn.gelu(t, approximate=False),
        "gelu_poly4": gelu4,
        "quad": lambda t: q2 * t * t + q1 * t + q0,
        "relu": jax.nn.relu,
    }

    def layer(a_name, f_name):
        n, heads = it["n"], it["heads"]

        def f(x, wq, bq, wk, bk, wv, bv, wo, bo, g1, b1, w1, c1, w2, c2, g2, b2):
            d = x.shape[1]
            dh = d // heads
            sp = lambda t: t.reshape(n, heads, dh).transpose(1, 0, 2)  # noqa: E731
            q, k, v = sp(x @ wq.T + bq), sp(x @ wk.T + bk), sp(x @ wv.T + bv)
            s = jnp.einsum("hqd,hkd->hqk", q, k) * (1.0 / np.sqrt(dh))
            ctx = jnp.einsum("hqk,hkd->hqd", attn[a_name](s), v).transpose(1, 0, 2).reshape(n, d)
            h = layer_norm(x + ctx @ wo.T + bo, g1, b1)
            return layer_norm(h + act[f_name](h @ w1.T + c1) @ w2.T + c2, g2, b2)
        return f

    name = it["name"]
    if name == "fxp_mul":
        return lambda x, y: x * y
    if name == "matmul":
        return lambda a, b: a @ b
    if name == "layernorm":
        return layer_norm
    if name.startswith("attn_"):
        return attn[name[5:]]
    if name.startswith("act_"):
        return act[name[4:]]
    if name.startswith("layer_"):
        a_name, f_name = name[6:].rsplit("_", 1) if not name.endswith("gelu_poly4") else (name[6:-11], "gelu_poly4")
        return layer(a_name, f_name)
    return None


def main():
    cfg_in = json.loads(sys.stdin.read())
    data = np.load(cfg_in["inputs"])
    res, outs = {}, {}
    for it in cfg_in["items"]:
        fn = programs(it)
        if fn is None:
            continue
        args = [data[f"{it['name']}/{i}"].astype(np.float32) for i in range(it["n_inputs"])]
        try:
            out, wall, links = run_3pc(fn, args, config())
        except Exception as e:  # noqa: BLE001 - report and go on
            res[it["name"]] = {"error": repr(e)[:300]}
            continue
        outs[it["name"]] = out
        res[it["name"]] = {"bytes": sum(l[0] for l in links), "send_actions": max((l[2] for l in links), default=-1),
                           "wall_s": round(wall, 4), "parties": len(links)}
    np.savez(cfg_in["outputs"], **outs)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
