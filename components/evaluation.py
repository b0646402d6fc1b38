"""Evaluation, one stage: held-out perplexity, where the router sends each corpus's tokens, and
the contributor's own before-publishing check against the anchor.

- Perplexity is token-weighted: exp(total NLL / total predicted tokens) over non-overlapping
  windows, at one context length for every model so figures compare across presets.
- Routing statistics (DESIGN §6): a merge that beats the anchor on average can still route badly
  (one row a sink, the public expert starved on public text), so every evaluation reports, per
  corpus, each expert's share of the router's softmax mass, averaged over tokens and layers,
  recorded in the same forward passes as the perplexity. Switched-off experts get 0.
- Local evaluation: does the module help its domain without hurting public text? Anchor + module
  (the dense 2-expert model) against the anchor alone, on held-out documents only (the corpus's
  validation and test splits).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Self

import torch
from pydantic import BaseModel
from transformers import PreTrainedModel

from components.checkpoints import load_tokenizer
from components.devices import pick_device
from components.documents import Corpus
from components.errors import DataError
from components.lm_training import autocast_for
from components.router import routers
from components.runtime import apply_selection, expert_names, load_flexo_model
from components.token_data import eval_windows, held_out_stream

# One context length for every model so figures compare across presets (all train at >= 128).
EVAL_SEQ_LEN = 128
EVAL_MAX_TOKENS = 65_536


class Perplexity(BaseModel):
    domain: str
    tokens: int  # predicted tokens the figure is averaged over
    nll: float  # mean negative log-likelihood per token (nats)
    routing: dict[str, float] = {}  # expert -> share of router mass (MoE models; DESIGN §6)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)


@torch.no_grad()
def perplexity(model: PreTrainedModel, stream: torch.Tensor, seq_len: int, domain: str = "",
               batch_size: int = 8) -> Perplexity:
    """Perplexity over non-overlapping windows of `stream` (every window predicts T-1 tokens)."""
    windows = eval_windows(stream, seq_len)  # (N, T)
    if len(windows) == 0:
        raise DataError(f"{domain or 'corpus'} has fewer than {seq_len} tokens to evaluate; "
                        f"add text")
    device = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = windows[i : i + batch_size].to(device)
        with autocast_for(device):
            logits = model(input_ids=batch).logits.float()  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum")
        total += nll.item()
        count += batch[:, 1:].numel()
    return Perplexity(domain=domain, tokens=count, nll=total / count)


class RoutingRecorder:
    """Records router probabilities during any forward passes run inside its `with` block, so
    routing shares come from the same pass as the perplexity."""

    def __init__(self, model: PreTrainedModel):
        self.model = model
        self.names = expert_names(model.config)
        self.moe = model.config.model_type == "flex_olmo"
        self.totals = torch.zeros(len(self.names), dtype=torch.float64)
        self.count = 0
        self._hooks: list = []

    def _record(self, _module, _inputs, output) -> None:
        logits = output[0].float()  # (N, E), switched-off experts at -inf
        self.totals += logits.softmax(dim=-1).sum(dim=0).double().cpu()
        self.count += logits.shape[0]

    def __enter__(self) -> Self:
        if self.moe:
            self._hooks = [r.register_forward_hook(self._record) for r in routers(self.model)]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()

    def shares(self) -> dict[str, float]:
        """Each expert's mean router probability over the recorded tokens (sums to 1)."""
        if not self.moe:
            return {self.names[0]: 1.0}
        return dict(zip(self.names, (self.totals / max(self.count, 1)).tolist(), strict=True))


def evaluate_model(model_dir: Path, corpora: list[Corpus], max_tokens: int = EVAL_MAX_TOKENS,
                   seq_len: int = EVAL_SEQ_LEN, device: str | None = None,
                   exclude: list[str] | None = None,
                   deny_list: Path | None = None) -> list[Perplexity]:
    """Perplexity (and routing shares) on `max_tokens` tokens of each corpus, windows spread
    evenly over it (`held_out_stream`); experts on `deny_list` are masked.

    Callers pass held-out text: a built-in domain's test split, or a user's evaluation directory.
    """
    dev = pick_device(device)
    model = load_flexo_model(model_dir, device=dev, deny_list=deny_list)
    apply_selection(model, exclude=exclude)
    tokenizer = load_tokenizer(model_dir)
    results = []
    for corpus in corpora:
        stream = held_out_stream(corpus.texts(), tokenizer, max_tokens, seq_len)
        with RoutingRecorder(model) as recorder:  # routing from the same forward passes
            result = perplexity(model, stream, seq_len, domain=corpus.name)
        results.append(result.model_copy(update={"routing": recorder.shares()}))
    return results


class LocalEvaluation(BaseModel):
    held_out_documents: int
    domain_perplexity: float
    domain_perplexity_anchor: float
    public_perplexity: float
    public_perplexity_anchor: float

    @property
    def domain_change(self) -> float:
        """Relative change of the own-domain perplexity; negative is better."""
        return self.domain_perplexity / self.domain_perplexity_anchor - 1

    @property
    def public_change(self) -> float:
        return self.public_perplexity / self.public_perplexity_anchor - 1

    def metrics(self) -> dict[str, float]:
        return {**self.model_dump(), "domain_change": self.domain_change,
                "public_change": self.public_change}


def held_out(corpus: Corpus) -> Corpus:
    """Documents the expert never trained on: the validation and test splits (hash-assigned)."""
    docs = [d for d in corpus.documents if d.split != "train"]
    if not docs:
        raise DataError(f"{corpus.name} has no held-out documents (needs ~20 or more documents); "
                        f"add more text")
    return Corpus(f"{corpus.name}:held-out", docs, corpus.licence, corpus.description)


def evaluate_against_anchor(model_dir: Path, anchor_dir: Path, corpus: Corpus, public: Corpus,
                            device: str | None = None,
                            max_tokens: int = EVAL_MAX_TOKENS) -> LocalEvaluation:
    own, pub = held_out(corpus), public.split("test")
    with_module = evaluate_model(model_dir, [own, pub], max_tokens, device=device)
    anchor = evaluate_model(anchor_dir, [own, pub], max_tokens, device=device)
    return LocalEvaluation(held_out_documents=len(own.documents),
                           domain_perplexity=with_module[0].perplexity,
                           domain_perplexity_anchor=anchor[0].perplexity,
                           public_perplexity=with_module[1].perplexity,
                           public_perplexity_anchor=anchor[1].perplexity)


class AcceptanceFigures(BaseModel):
    """A candidate release on the contributor's own held-out text, against the anchor: what its
    acceptance is decided on (numbers only leave the machine)."""

    held_out_documents: int
    anchor_perplexity: float
    release_perplexity: float
    own_routing_share: float  # the contributor's expert's share of router mass on its own text
    public_routing_share: float  # ... and on public held-out text

    @property
    def change(self) -> float:
        return self.release_perplexity / self.anchor_perplexity - 1


def evaluate_for_acceptance(release_dir: Path, anchor_dir: Path, corpus: Corpus, public: Corpus,
                            expert: str, device: str | None = None,
                            max_tokens: int = EVAL_MAX_TOKENS,
                            deny_list: Path | None = None) -> AcceptanceFigures:
    """Release and anchor on `corpus`'s held-out documents (those its expert never trained on),
    and where the release routes them and public text."""
    own = held_out(corpus)
    release = evaluate_model(release_dir, [own, public.split("test")], max_tokens, device=device,
                             deny_list=deny_list)
    anchor = evaluate_model(anchor_dir, [own], max_tokens, device=device)
    if expert not in release[0].routing:
        raise DataError(f"the release has no expert '{expert}' (experts: "
                        f"{', '.join(release[0].routing)}); pass the contributor it includes")
    return AcceptanceFigures(held_out_documents=len(own.documents),
                             anchor_perplexity=anchor[0].perplexity,
                             release_perplexity=release[0].perplexity,
                             own_routing_share=release[0].routing[expert],
                             public_routing_share=release[1].routing[expert])
