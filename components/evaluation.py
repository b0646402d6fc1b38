"""Held-out perplexity of one model on several corpora, token-weighted per corpus."""

from __future__ import annotations

from pathlib import Path

import torch

from components.checkpoints import load_tokenizer
from components.documents import Corpus
from components.perplexity import Perplexity, perplexity
from components.routing_stats import RoutingRecorder
from components.runtime import apply_selection, load_flexo_model
from components.token_data import token_stream

# One context length for every model so figures compare across presets (all train at >= 128).
EVAL_SEQ_LEN = 128
EVAL_MAX_TOKENS = 65_536


def evaluate_model(model_dir: Path, corpora: list[Corpus], max_tokens: int = EVAL_MAX_TOKENS,
                   seq_len: int = EVAL_SEQ_LEN, device: str | None = None,
                   exclude: list[str] | None = None) -> list[Perplexity]:
    """Perplexity (and routing shares) on the first `max_tokens` tokens of each corpus, in
    document-hash order.

    Callers pass held-out text: a built-in domain's test split, or a user's evaluation directory.
    """
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_flexo_model(model_dir, device=dev)
    apply_selection(model, exclude=exclude)
    tokenizer = load_tokenizer(model_dir)
    results = []
    for corpus in corpora:
        stream = token_stream(corpus.texts(), tokenizer, max_tokens=max_tokens + 1)
        with RoutingRecorder(model) as recorder:  # routing from the same forward passes
            result = perplexity(model, stream, seq_len, domain=corpus.name)
        results.append(result.model_copy(update={"routing": recorder.shares()}))
    return results
