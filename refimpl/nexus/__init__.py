"""NEXUS (Zhang et al., NDSS 2025): the non-interactive secure transformer blocks on RNS-CKKS.

compression  Alg. 5: coefficient packing, the Subs expansion tree (depth-first walk), input expansion
folding      Alg. 7: row duplication, quick_sum, quick_max
matmul       ct-pt product on decompressed inputs, Alg. 6 protocol, ct-ct products
sign, gelu, softmax, layernorm, argmax: the nonlinear blocks (polynomial approximations)
levels       level and scale bookkeeping shared by the blocks
counting     evaluator proxy whose counters check the spec's operation counts
official     the official code's simplified variants, for like-for-like benchmarks only
bert/        the encrypted BERT: layout, ranges, the chain of pieces, the forward, references
protocol/    the client/server protocol: wire, transport, models, server, client
context      ours: which keys a block needs (keys_for) and a context that makes them and runs it

Start with compression and folding (the paper's two packing ideas), then softmax; context
shows how to run one block; bert/ puts the blocks together.
"""

from .context import BLOCKS, BlockContext, KeyNeeds, keys_for

__all__ = ["BLOCKS", "BlockContext", "KeyNeeds", "keys_for"]
