"""Encrypted BERT under NEXUS: the server's forward pass on CKKS ciphertexts, with real bootstrapping.

    client: x = LayerNorm(word[ids] + position + type)  [n, d], packed and encrypted
    server, per layer:  Q, K, V = x W^T + b (ct-pt);  S = Q K^T / sqrt(dh) (ct-ct);
                        P = Softmax(S) (QuickMax, exp, QuickSum, Goldschmidt)  or  (S + c)^2 m / f(n);
                        x = LN(x + (P V) W_O^T + b_O);  x = LN(x + act(x W_1^T + b_1) W_2^T + b_2)
                        (act = the 4-piece GELU, or Quad);  logits = W_C x[CLS] + b_C;  optional Argmax.

Layout (token-major windows). A matrix [n, F] is cut into chunks of P features (P a power of
two); chunk c is one ciphertext whose slot t w + j holds X[t, c P + j], window w = 2P, for the
n tokens t < n_pad (n_pad = the power of two >= n, n_pad w <= N/2). The second half of every
window is zero, so x + RotR(x, P) makes each window cyclic (NEXUS's row duplication, Alg. 7).
Windows t >= n are inactive: every plaintext (diagonals, biases, gamma, beta, masks) is zero
there, so they hold only noise.
  - ct-pt products: the diagonal method per P x P block with baby-step giant-step (Halevi and
    Shoup 2014; the hoisted rotations of the duplicated input are shared by all output chunks):
    (g - 1) + (P/g - 1) rotations and P plaintext products per block, 1 level; g chosen per product for the
    fewest key switches (layout.bsgs_baby, ours).
  - Q K^T: for each key shift r < n_pad, Q * RotL(K, r w) (the keys rotated by whole token
    windows, hoisted), QuickSum over each head's dh slots, a one-hot mask (with 1/sqrt(dh)),
    RotR by r: row (i, h) of S sits in slots i w + h dh + r, keys in the order (i + r) mod n_pad.
    n_pad products, 2 levels. Rows of n_pad keys in windows of dh slots, so dh >= 2 n_pad
    (Softmax: duplication) or dh >= n_pad (2Quad).
  - P V: for each r, mask column r of P (the key mask / f(n) of 2Quad-freeDiv folded in), RotL by
    r and broadcast over the head's dh slots (log2 dh rotations), times RotL(V, r w). 2 levels.
  - Softmax, LayerNorm, GELU: the blocks of refimpl.nexus (QuickMax rounds by max_pair, exp,
    Goldschmidt inverse, Newton + Goldschmidt 1/sqrt, the 4-piece GELU with its feature mask
    folded into the scale-aligning products), LayerNorm summing the chunks before its QuickSum.
  - Quad = 0.125 x^2 + 0.25 x + 0.5 in one level: sqrt(0.125) is folded into W_1 and b_1.
  - The activation's output is carried divided by M = act_div (folded into the GELU mask or into
    W_1 for Quad, undone by W_2 x M), so that it can be refreshed at level 0 without scaling.

Bootstrapping: the forward is a chain of pieces (qkv, qk, QuickMax rounds, exp, inverse, ...,
LayerNorm in four pieces, FFN, activation) with level costs, widths (ciphertexts alive) and
joins (the residual, x - max, e / sum); `plan` places the bootstraps so that the fewest
ciphertexts are refreshed (our objective and dynamic program over levels; e.g. the one-ciphertext variance
inside LayerNorm rather than its d features, the hidden stream rather than the 4x wider FFN
stream) and the forward follows the plan, checking the level after every piece. Values are
scaled into [-1, 1] before a bootstrap when a level is left (EvalMod is accurate for slot
values of size about 1) and scaled back by an integer product afterwards (no level, the scale
stays near the primes); an unscaled refresh at level 0 only for |x| <= 4 or where EvalMod's
coarse error is harmless (QuickMax's running maximum, a - max before exp).

Ranges: the approximations have valid input ranges; a NexusModel carries ranges calibrated on
plaintext inputs (refimpl.nexus.bert.ranges).

Modules: layout (packing, rotations, slot vectors; the client's embedding), ranges (NexusModel,
calibration, ranges JSON), chain (the pieces and the plan), forward (the encrypted forward; start
here), nonlinear (its Softmax, LayerNorm, GELU and refresh), reference (float64 references); ours:
attention (Q K^T and P V as additions over a head's features and keys), packing (two ciphertexts per
bootstrap, two heads per score ciphertext, two FFN chunks per GELU ciphertext), paired (the forward's
blocks that use them), linear_pairs (the FFN on complex-packed chunk pairs), weights_store (the encoded weights on disk), checkpoint (a forward that
resumes). The placement program itself is refimpl.ckks.bootstrap.placement.

Reference: NEXUS (Zhang et al., NDSS 2025) §3 (blocks), §4 (system), Alg. 5-7; BERT (Devlin et
al. 2019); freeDiv (Liu Weixin et al. 2024) 2Quad-freeDiv attention; MPCFormer (Quad).
"""


from __future__ import annotations

# The public names of the package's modules, so that `from refimpl.nexus.bert import X` keeps working.
from .layout import (
    LOGIT_BOUND, QUAD_ROOT, Layout, SlotVectors, bsgs_baby, client_embed, input_layout, linear_steps, pack, pack_input, pow2, rotation_steps, unpack, unpack_argmax, unpack_output,
)
from .ranges import (
    CALIBRATION_SEED, DESIGN_OPTIONS, GELU_PRESCALES, RANGES_FORMAT, NexusModel, calibrate, check_ranges, gelu_prescale, gelu_valid_range, ranges_from_json, ranges_to_json,
)
from .reference import (
    argmax_reference, gelu_model, layernorm_model, plaintext_reference, softmax_model,
)
from .chain import (
    bootstrap_level_of, greedy_points, layernorm_pieces, newton_split, pieces_of, plan,
)
from .forward import (
    Forward, encrypted_forward,
)
from ...ckks.bootstrap.placement import Piece, place, plan_table, simulate

__all__ = [
    "LOGIT_BOUND", "QUAD_ROOT", "Layout", "SlotVectors", "bsgs_baby", "client_embed", "input_layout", "linear_steps",
    "pack", "pack_input",
    "pow2", "rotation_steps", "unpack", "unpack_argmax", "unpack_output", "CALIBRATION_SEED", "DESIGN_OPTIONS",
    "GELU_PRESCALES", "RANGES_FORMAT", "NexusModel", "calibrate", "check_ranges", "gelu_prescale",
    "gelu_valid_range", "ranges_from_json", "ranges_to_json", "argmax_reference", "gelu_model",
    "layernorm_model", "plaintext_reference", "softmax_model", "bootstrap_level_of", "greedy_points",
    "layernorm_pieces", "newton_split", "pieces_of", "plan", "Forward", "encrypted_forward", "Piece", "place",
    "plan_table", "simulate",
]
