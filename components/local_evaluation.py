"""The contributor's own check before publishing: does the module help its domain without hurting
public text? Perplexity of the anchor + module (the dense 2-expert model) against the anchor alone,
on held-out documents only (the corpus's validation and test splits)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from components.documents import Corpus
from components.errors import DataError
from components.evaluation import EVAL_MAX_TOKENS, evaluate_model


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
