"""Matrix products (NEXUS §3.1, §4.1, Alg. 6) against numpy float64.

Tolerances: a leaf carries the fresh and expansion error (about 2^-(40 - log2 N - 8), see
test_nexus_compression); a product with |A| <= 1 sums n such terms (+ log2 n bits), and the
encoding of A at Delta = 2^40 adds 2^-41 relative: we require 40 - (log2 N + 8) - log2(n) - 1
bits. Alg. 6 adds the client's layer error e' and the re-randomisation (one fresh error each).
"""

import numpy as np
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ring.sampling import RandomSource
from refimpl.nexus.counting import CountingEvaluator
from refimpl.nexus.matmul import (
    alg6_client_online, alg6_client_precompute, alg6_server_online, alg6_server_strip, chunk_counts,
    compress_matrix, layout_block_broadcast, layout_interleaved, layout_row_major, layout_row_replicated,
    matmul_compressed, qk_scores, qk_scores_pairwise, scores_times_v, subs_elements_for,
)

from .helpers import Kit, bits

N = 1024


@pytest.fixture(scope="module")
def kit():
    p = Parameters.create(N=N, levels=2, num_p=1, insecure=True)
    return Kit(p, elements=subs_elements_for(N, N))


def test_chunk_counts():
    assert chunk_counts(1536, 1024) == [1024, 512] and chunk_counts(100, 1024) == [128] and chunk_counts(2048, 1024) == [1024, 1024]


@pytest.mark.parametrize("m,n,k", [(32, 16, 8), (64, 32, 48)])
def test_matmul_compressed(kit, m, n, k):
    """NEXUS-MM-CTPT: n k plaintext products, 0 rotations, 1 level; Subs = sum of (tree size - 1)."""
    rng = np.random.default_rng(m + n + k)
    A, B = rng.uniform(-1, 1, (m, n)), rng.uniform(-1, 1, (n, k))
    cts = compress_matrix(kit.enc, kit.E, B)
    ev = CountingEvaluator(kit.ev)
    out = matmul_compressed(ev, A, cts, k)
    counts = chunk_counts(n * k, N)
    assert ev.counts["subs"] == sum(c - 1 for c in counts)
    assert ev.counts["rotations"] == 0 and ev.counts["mul_plain"] == n * k
    assert all(o.level == kit.p.L - 1 for o in out)
    got = np.stack([kit.decrypt(o)[:m] for o in out], axis=1)
    assert bits(got - A @ B) >= 40 - (10 + 8) - np.log2(n) - 1


def test_alg6_protocol():
    """NEXUS-ALG6: precomputation (client: U x Enc_S(W), own layer; server: strips its layer), online (A' - U) W + Enc_C(V) = Enc_C(A' W)."""
    p = Parameters.create(N=N, levels=2, num_p=1, insecure=True)
    m, n, k = 64, 16, 8
    rng = np.random.default_rng(7)
    W, A_prime = rng.uniform(-1, 1, (n, k)), rng.uniform(-1, 1, (m, n))
    enc = Encoder(p)
    # server S: keys, compressed weights, Subs keys for the client's decompression
    kg_s = KeyGenerator(p, RandomSource.insecure_seeded(11))
    sk_s = kg_s.secret_key()
    pk_s = kg_s.public_key(sk_s)
    ek_s = kg_s.evaluation_keys(sk_s, elements=subs_elements_for(N, n * k), relin=False)
    msg_w = compress_matrix(enc, Encryptor(pk_s, RandomSource.insecure_seeded(12)), W)
    # client C: its own key, a random mask U
    kg_c = KeyGenerator(p, RandomSource.insecure_seeded(21))
    sk_c = kg_c.secret_key()
    U = rng.uniform(-1, 1, (m, n))
    layered = alg6_client_precompute(Evaluator(p, ek_s), msg_w, k, U, Encryptor(pk_s, RandomSource.insecure_seeded(22)), sk_c, RandomSource.insecure_seeded(23))
    s_view = enc.decode(Decryptor(sk_s).decrypt(layered[0])).real[:m]
    assert np.max(np.abs(s_view - (U @ W)[:, 0])) > 1e3  # under s_S + s_C, s_S alone gives noise
    enc_v = alg6_server_strip(layered, sk_s)
    v = np.stack([enc.decode(Decryptor(sk_c).decrypt(c)).real[:m] for c in enc_v], axis=1)
    assert bits(v - U @ W) >= 40 - 18 - 5
    # online
    masked = alg6_client_online(A_prime, U)
    out = alg6_server_online(Evaluator(p), masked, W, enc_v)
    got = np.stack([enc.decode(Decryptor(sk_c).decrypt(c)).real[:m] for c in out], axis=1)
    assert bits(got - A_prime @ W) >= 40 - 18 - 5


@pytest.fixture(scope="module")
def kit_att():
    p = Parameters.create(N=2048, levels=3, dnum=2, insecure=True)
    d = 32
    rot = [1 << i for i in range(5)] + [-i for i in range(1, d)] + [d << i for i in range(5)]
    return Kit(p, rotations=rot)


def test_attention_ct_ct(kit_att):
    """NEXUS-MM-CTCT: S = Q K^T (n products, n log2 d + n - n/d rotations, 2 levels), O = S V (n d / d products per group, d log2 n rotations)."""
    k = kit_att
    n = d = 32
    slots = k.p.slots
    Q, K, V = (k.rng.uniform(-0.5, 0.5, (n, d)) for _ in range(3))
    q_rep = [k.encrypt(layout_row_replicated(Q, i, slots)) for i in range(n)]
    k_flat = k.encrypt(layout_row_major(K, slots))
    ev = CountingEvaluator(k.ev)
    S_ct = qk_scores(ev, q_rep, k_flat, n, d)
    assert ev.counts["ct_mults"] == n and ev.counts["rotations"] == n * 5 + (n - n // d)
    assert len(S_ct) == 1 and S_ct[0].level == k.p.L - 2
    S = Q @ K.T
    assert bits(k.decrypt(S_ct[0]) - layout_interleaved(S, 0, d, slots)) >= 40 - 11 - 10
    v_cols = [k.ev.drop_level(k.encrypt(layout_block_broadcast(V, c, slots)), S_ct[0].level) for c in range(d)]
    ev.reset()
    O_ct = scores_times_v(ev, S_ct, v_cols, n, d)
    assert ev.counts["ct_mults"] == d and ev.counts["rotations"] == d * 5
    O = np.stack([k.decrypt(c)[:d] for c in O_ct[0]], axis=1)  # [r, c]
    assert bits(O - S @ V) >= 40 - 11 - 12


def test_attention_pairwise_alternative(kit_att):
    """NEXUS-MM-CTCT: the paper's per-pair form costs n^2 products and n^2 (log2 d + 1) rotations (n = d = 4 here)."""
    k = kit_att
    n = d = 4
    Q, K = (k.rng.uniform(-0.5, 0.5, (n, d)) for _ in range(2))
    pad = lambda r: np.concatenate([r, np.zeros(k.p.slots - d)])
    ev = CountingEvaluator(k.ev)
    S_rows = qk_scores_pairwise(ev, [k.encrypt(pad(q)) for q in Q], [k.encrypt(pad(r)) for r in K], n, d)
    assert ev.counts["ct_mults"] == n * n and ev.counts["rotations"] == n * n * (2 + 1)
    got = np.stack([k.decrypt(r)[:n] for r in S_rows])
    assert bits(got - Q @ K.T) >= 40 - 11 - 10
