"""`flexo audit`: how much of a corpus a model reproduces verbatim (extraction audit)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import app, command, out
from flows.cli.options import JsonOpt


class AuditSplit(str, Enum):
    train = "train"  # the documents an expert trains on (its 90% train split)
    all = "all"


@command(app)
def audit(
    model: Annotated[Path, typer.Option(help="Model directory (anchor, expert or merged).")],
    data: Annotated[Path, typer.Option(help="The training text to probe (.txt/.md/.jsonl).")],
    documents: Annotated[int, typer.Option(help="Documents to probe.")] = 1000,
    samples: Annotated[int, typer.Option(help="Continuations sampled per document.")] = 10,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    split: Annotated[AuditSplit, typer.Option(
        help="train: the documents an expert trains on (its 90% train split); all: every "
             "document.")] = AuditSplit.train,
    as_json: JsonOpt = False,
) -> None:
    """Extraction rate with a 95% interval (paper §5.3): 32-token prefix, 10 samples, sim >= 0.9."""
    from components.checkpoints import load_config

    load_config(model)
    from components.checkpoints import load_tokenizer
    from components.extraction_audit import AuditConfig, extraction_audit
    from components.runtime import load_flexo_model
    from components.user_data import load_directory

    corpus = load_directory(data)
    texts = corpus.training_texts() if split is AuditSplit.train else corpus.texts()
    result = extraction_audit(load_flexo_model(model), load_tokenizer(model), texts,
                              AuditConfig(documents=documents, samples=samples, seed=seed))
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    out.print(f"extracted {result.extracted} of {result.documents} documents: "
              f"{result.rate:.1%} (95% CI {result.ci_low:.1%}-{result.ci_high:.1%}); "
              f"mean best similarity {result.mean_best_similarity:.3f}")
