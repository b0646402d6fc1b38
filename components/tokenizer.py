"""Byte-level BPE trained on the public mix and saved as a standard transformers tokenizer."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192) -> PreTrainedTokenizerFast:
    """Train on `texts`; the specials come first so their ids (0, 1) stay fixed across vocab sizes."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=[EOS, PAD], show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS,
                                  bos_token=EOS, pad_token=PAD, model_max_length=1 << 20)
    log.info("trained a byte-level BPE tokenizer with %d tokens", len(tok))
    return tok
