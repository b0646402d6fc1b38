from itertools import pairwise

import torch

from components.checkpoints import load_tokenizer
from components.token_data import EVAL_SPREAD, held_out_stream, token_stream


def _rows(stream: torch.Tensor, full: torch.Tensor, seq_len: int) -> list[int]:
    """Which aligned `seq_len` window of `full` each window of `stream` is (-1: none)."""
    aligned = full[: full.numel() // seq_len * seq_len].view(-1, seq_len)
    return [next((i for i, row in enumerate(aligned) if torch.equal(row, w)), -1)
            for w in stream.view(-1, seq_len)]


def test_held_out_windows_are_spread_over_the_split_not_taken_from_its_first_documents(
        builtin, tiny_anchor):
    """The public test split's first 4,096 tokens are a dozen documents; the evaluation's 4,096
    are windows spread evenly over 16 times as much of it."""
    tokenizer = load_tokenizer(tiny_anchor)
    texts = builtin["public"].split("test").texts()
    read = token_stream(texts, tokenizer, max_tokens=4096 * EVAL_SPREAD)  # what the sample sees
    assert read.numel() == 4096 * EVAL_SPREAD
    stream = held_out_stream(texts, tokenizer, 4096, 128)
    assert stream.numel() == 4096
    rows = _rows(stream, read, 128)
    assert -1 not in rows  # every window is real held-out text, unchanged
    assert rows[0] == 0 and rows[-1] == read.numel() // 128 - 1  # first window to last
    gaps = {b - a for a, b in pairwise(rows)}
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    eos = tokenizer.eos_token_id
    prefix_documents = int((read[:4096] == eos).sum()) + 1
    spread_documents = len({int((read[: r * 128] == eos).sum()) for r in rows})
    assert spread_documents >= 2 * prefix_documents  # tiny tokenizer: 28 against 13


def test_held_out_text_shorter_than_the_sample_is_read_whole(builtin, tiny_anchor):
    tokenizer = load_tokenizer(tiny_anchor)
    texts = builtin["public"].split("test").texts()[:3]
    full = token_stream(texts, tokenizer)
    stream = held_out_stream(texts, tokenizer, full.numel() + 1000, 128)
    assert torch.equal(stream, full)


def test_a_repeated_stream_is_the_fresh_tokenisation_and_each_caller_gets_its_own(builtin,
                                                                                tiny_anchor):
    """Streams are tokenised once per process for the same texts and tokenizer: what comes back
    the second time must be what tokenising again gives, and a caller's change stays its own."""
    from components import token_data

    tokenizer = load_tokenizer(tiny_anchor)
    texts = builtin["legal"].split("test").texts()[:20]
    first = token_stream(texts, tokenizer, max_tokens=2000)
    first.zero_()
    reused = token_stream(texts, tokenizer, max_tokens=2000)
    token_data._STREAMS.clear()
    fresh = token_stream(texts, tokenizer, max_tokens=2000)
    assert torch.equal(reused, fresh) and fresh.any()
    assert token_stream(texts, tokenizer, max_tokens=1000).numel() == 1000  # another key
