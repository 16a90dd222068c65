"""BERT-base at n = 128 under NEXUS: blocks, levels, counts, bootstrap plan, timed instances, derived time.

BERT-base (12 layers, d = 768, 12 heads of 64, FFN 3072) at n = 128 tokens on N = 2^16
(`128-2^16-dense19`: 19 levels after bootstrapping) in refimpl's layout (refimpl.nexus.bert with
head_rows: a row of 128 keys, 256 slots with Softmax's duplication, does not fit a head's 64
slots, so each head's scores get a ciphertext of their own; P = 128 features per chunk, 2 heads
per chunk, windows of 256 slots, 128 token windows = all 32768 slots):
hidden stream 6 ciphertexts, FFN stream 24, score stream 12.

1. Blocks: the pieces of refimpl.nexus.bert.chain.pieces_of (the same level costs and widths the
   forward checks), grouped into block kinds; bootstraps placed by refimpl.ckks.bootstrap.placement.place
   (our dynamic program):
   the fewest ciphertexts refreshed, or with `--weigh-by FILE` (ours) the least derived time,
   each piece's seconds per limb taken from FILE's timed run of the fewest-refreshes plan.
2. Timing: one instance of each block kind on real ciphertexts with the forward's own kernels
   (Forward.linear, head_scores, softmax_pieces, pv, layernorm, gelu_masked, quad, head), at the
   level the plan gives the block; refreshes inside a block go through an OracleBootstrapper
   (decrypt and re-encrypt, its time excluded) and are charged at the measured bootstrap time.
   Instances smaller than the block are scaled by an exact count of the work:
     linear (ct-pt, BSGS diagonals): one P x P block (1 input chunk -> 1 output chunk, 128
       diagonals), and apart its hoisted baby steps (once per input chunk) and its 7 giant-step
       rotations (once per output chunk); c_in -> c_out chunks cost
       c_in T_baby + c_out T_giant + c_in c_out (T_block - T_baby - T_giant);
     Q K^T and P V: one chunk (2 heads) over s of the 128 key shifts (every shift does the same
       work: 1 ct-ct product, a QuickSum, masks and rotations), times 6 chunks x 128 / s;
     Softmax, 2Quad, GELU, Quad: one ciphertext, times the stream's ciphertexts;
     LayerNorm: the whole block (6 ciphertexts, 128 x 768); the head: once per model.
   layer time = sum(block time x count) + refreshed ciphertexts x bootstrap time;
   model time = the 12 layers of the plan + head.
3. Ranges (Softmax bound B, LayerNorm variance ranges, GELU prescale, activation divisor) are not
   BERT-base's own (refimpl holds no BERT-base checkpoint): each layer gets the widest of the
   shipped small model's calibrated ranges (its NexusModel.get_ranges on synthetic text).

Every instance records its wall and process CPU seconds and the load average (the machine is
shared: on a quiet machine CPU ~ 2 x wall with two numba threads, under load CPU ~ wall), its
decrypted error against numpy float64, and the peak RSS. `--gelu-probe` measures the 4-piece
GELU's error by Sgn prescale on one ciphertext.

`refimpl experiment bertbase [--counts] [--json results/nexus/nexus_bertbase_128.json]` (or `refimpl reproduce
nexus-bertbase ...`). Modules: plan (model, plan, derived time, tables, merge), timer (BlockTimer,
gelu_probe), counts (key switches, bootstraps and plaintext products per block, counted with no
arithmetic: `--counts`), run (the command).

Reference: NEXUS (Zhang et al., NDSS 2025) §3-4; BERT (Devlin et al. 2019) base size;
freeDiv (Liu Weixin et al. 2024) 2Quad-freeDiv; MPCFormer (Quad).
"""

from __future__ import annotations

# The names of the modules, so that `from refimpl.experiments import bertbase as bb; bb.blocks(...)` reads short.
from .plan import (  # noqa: F401
    BERT_BASE, BOOTSTRAP_JSON, KEY_SHIFTS, KINDS, LAYER, MODELS, N_TOKENS, PRESET, QUIET_BOOTSTRAP_S, blocks, config,
    derive, kind_of, layout, limb_seconds, markdown, merge, paper_figures, shipped_ranges, synthetic_model, table,
    widest_ranges,
)
from .run import command  # noqa: F401
from .timer import BlockTimer, TimedForward, gelu_probe  # noqa: F401
