"""Text -> token streams -> training windows and evaluation windows."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from transformers import PreTrainedTokenizerBase

from components.errors import DataError
from components.tensor_memo import TensorMemo

_STREAMS = TensorMemo(max_bytes=128 * 2**20)


def _stream_key(texts: list[str], tokenizer: PreTrainedTokenizerBase,
                max_tokens: int | None) -> str | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)  # fast tokenizers only
    if backend is None:
        return None
    h = hashlib.sha256(f"{max_tokens}|{tokenizer.eos_token_id}|".encode())
    h.update(backend.to_str().encode())  # vocabulary, merges, normalisers
    for text in texts:
        h.update(len(text).to_bytes(8, "little") + text.encode())
    return h.hexdigest()


def token_stream(texts: list[str], tokenizer: PreTrainedTokenizerBase,
                 max_tokens: int | None = None, batch: int = 256) -> torch.Tensor:
    """Documents joined by EOS into one 1-D int64 tensor, stopping once `max_tokens` are in.
    Tokenised once per process for the same texts and tokenizer: an anchor and every release
    built on it share the tokenizer, and each evaluation, acceptance and expert reads the same
    held-out and public text."""
    key = _stream_key(texts, tokenizer, max_tokens)
    if (kept := _STREAMS.get(key)) is not None:
        return kept
    stream = _tokenise(texts, tokenizer, max_tokens, batch)
    _STREAMS.put(key, stream)
    return stream


def _tokenise(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_tokens: int | None,
              batch: int) -> torch.Tensor:
    eos = tokenizer.eos_token_id
    chunks: list[list[int]] = []
    total = 0
    for i in range(0, len(texts), batch):
        for ids in tokenizer(texts[i : i + batch], add_special_tokens=False)["input_ids"]:
            chunks.append(ids + [eos])
            total += len(ids) + 1
        if max_tokens is not None and total >= max_tokens:
            break
    flat = torch.tensor([t for c in chunks for t in c], dtype=torch.long)
    return flat[:max_tokens] if max_tokens is not None else flat


def window_sampler(stream: torch.Tensor, seq_len: int,
                   batch_size: int) -> Callable[[torch.Generator], torch.Tensor]:
    """A sampler of (batch_size, seq_len) windows at random offsets of `stream`."""
    if stream.numel() <= seq_len:
        raise DataError(f"need more than {seq_len} tokens to train, got {stream.numel()}; "
                        f"add text")
    offsets = torch.arange(seq_len)

    def sample(generator: torch.Generator) -> torch.Tensor:
        starts = torch.randint(0, stream.numel() - seq_len, (batch_size, 1), generator=generator)
        return stream[starts + offsets]  # (B, T)

    return sample


def eval_windows(stream: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Non-overlapping (N, seq_len) windows; the tail shorter than a window is dropped."""
    n = stream.numel() // seq_len
    return stream[: n * seq_len].view(n, seq_len)


EVAL_SPREAD = 16  # a held-out sample is drawn from up to this many times its size of text


def held_out_stream(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_tokens: int,
                    seq_len: int) -> torch.Tensor:
    """`max_tokens` held-out tokens as `seq_len` windows spread evenly over the text (up to
    EVAL_SPREAD x `max_tokens` of it, in document-hash order), joined so `eval_windows` cuts
    them apart again. The first `max_tokens` would be a handful of documents: on the public
    mix's test split (95,615 tokens) its first 8,192 are 69% Bible chapters, where the whole
    split has 54%, and code's first 8,192 are two documents."""
    stream = token_stream(texts, tokenizer, max_tokens=max_tokens * EVAL_SPREAD)
    total, n = stream.numel() // seq_len, max(1, max_tokens // seq_len)
    if total <= n:
        return stream[: max_tokens]
    starts = torch.linspace(0, total - 1, n).round().long() * seq_len  # (n,), evenly spaced
    return stream[starts[:, None] + torch.arange(seq_len)].reshape(-1)
