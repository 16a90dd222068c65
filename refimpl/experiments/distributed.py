"""One linear block spread over two Dask workers on one machine, beside the same block in one process
(docs/nexus-distributed.md).

The block: an FFN1-shaped projection (Forward.linear, Halevi-Shoup diagonals with baby-step giant-step)
whose output chunks are independent given the input chunks. Each worker receives the evaluation
keys once (serialized, refimpl.ckks.serialize), then per block the input ciphertexts and the rows of
W for its output chunks, and returns its output ciphertexts serialized; the baby steps are redone
on each worker (the alternative, shipping the g rotated inputs, costs g times the input bytes).
Small insecure ring; dask.distributed is optional (not a dependency of refimpl).
"""

from __future__ import annotations

import time

import numpy as np

from ..bert.config import BertConfig
from ..bert.model import init_params
from ..ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from ..ckks.bootstrap.bootstrapper import bootstrap_parameters
from ..ckks.serialize import (deserialize_ciphertext, deserialize_evaluation_keys, serialize_ciphertext,
                              serialize_evaluation_keys)
from ..nexus import bert as nb
from ..ring.sampling import RandomSource

LOGN, HIDDEN, FFN, N_TOKENS = 12, 128, 512, 6


def setting():
    p, _ = bootstrap_parameters(2**LOGN, levels_after=6, encapsulation_h=32, num_p=3, insecure=True)
    cfg = BertConfig(vocab_size=50, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=FFN, max_position_embeddings=16, attention="2quad-freediv", activation="quad")
    model = nb.NexusModel(cfg, init_params(cfg, np.random.default_rng(1), dtype=np.float64),
                          ranges={"score_bound": 8.0, "var": {}, "act": (-4.0, 4.0), "absmax": {}})
    return p, model, nb.input_layout(cfg, N_TOKENS, p.slots)


def block(keys_blob: bytes, cts_blobs: list[bytes], W: np.ndarray, b: np.ndarray) -> list[bytes]:
    """A worker's task: Forward.linear of the serialized inputs by W, b (its output chunks); outputs serialized."""
    p, model, lay = setting()
    ev = Evaluator(p, deserialize_evaluation_keys(keys_blob, p))
    fw = nb.Forward(ev, None, model, lay, np.ones(lay.n), [], [], None)
    ys = fw.linear([deserialize_ciphertext(c, p) for c in cts_blobs], W, b)
    return [serialize_ciphertext(y) for y in ys]


def run(log=print) -> dict:
    """The block in one process and on two Dask workers (each half of the output chunks); times and errors."""
    from dask.distributed import Client, LocalCluster  # lazy: dask is optional, imported only for this run

    p, model, lay = setting()
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    P = lay.chunk
    cin, cout = lay.chunks(HIDDEN), lay.chunks(FFN)  # Forward.linear's rotations, whole and halved (a worker's)
    steps = sorted(nb.linear_steps(P, nb.bsgs_baby(P, cin, cout)) | nb.linear_steps(P, nb.bsgs_baby(P, cin, cout // 2)))
    ek = kg.evaluation_keys(sk, rotations=steps)
    keys_blob = serialize_evaluation_keys(ek, p)
    enc = Encoder(p)
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (lay.n, HIDDEN))
    W, b = rng.normal(0, 1 / np.sqrt(HIDDEN), (FFN, HIDDEN)), rng.normal(0, 0.1, FFN)
    level = 5
    cts = [Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(3)).encrypt(enc.encode(v, level=level))
           for v in nb.pack_input(x, lay)]
    blobs = [serialize_ciphertext(c) for c in cts]
    D = Decryptor(sk)
    ref = x @ W.T + b

    def err(out_blobs):
        ys = [enc.decode(D.decrypt(deserialize_ciphertext(o, p))).real for o in out_blobs]
        return float(np.max(np.abs(nb.unpack(ys, lay, FFN) - ref)))

    t0 = time.perf_counter()
    one = block(keys_blob, blobs, W, b)
    one_s = time.perf_counter() - t0
    half = (lay.chunks(FFN) // 2) * P
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t0 = time.perf_counter()
        kf = client.scatter(keys_blob, broadcast=True)
        scatter_s = time.perf_counter() - t0
        client.submit(len, kf).result()
        t0 = time.perf_counter()
        futs = [client.submit(block, kf, blobs, W[:half], b[:half], pure=False),
                client.submit(block, kf, blobs, W[half:], b[half:], pure=False)]
        two = [o for f in futs for o in f.result()]
        two_s = time.perf_counter() - t0
    row = {"N": p.N, "level": level, "input_chunks": len(cts), "output_chunks": lay.chunks(FFN),
           "key_bytes": len(keys_blob), "input_bytes": sum(map(len, blobs)), "output_bytes": sum(map(len, two)),
           "one_process_s": round(one_s, 2), "two_workers_s": round(two_s, 2), "keys_scatter_s": round(scatter_s, 2),
           "one_process_err": err(one), "two_workers_err": err(two),
           "same_ciphertexts": all(a == c for a, c in zip(one, two))}
    log(row)
    return row
