"""`flexo audit`: how much of a corpus a model reproduces verbatim (extraction audit)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from components.errors import ConfigError
from flows.cli_app import app, friendly_errors, out


@app.command()
@friendly_errors
def audit(
    model: Annotated[Path, typer.Option(help="Model directory (anchor, expert or merged).")],
    data: Annotated[Path, typer.Option(help="The training text to probe (.txt/.md/.jsonl).")],
    documents: Annotated[int, typer.Option(help="Documents to probe.")] = 1000,
    samples: Annotated[int, typer.Option(help="Continuations sampled per document.")] = 10,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    split: Annotated[str, typer.Option(help="train: the documents an expert trains on (its 90% "
                                       "train split); all: every document.")] = "train",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Extraction rate with a 95% interval (paper §5.3): 32-token prefix, 10 samples, sim >= 0.9."""
    from components.checkpoints import load_config

    if split not in ("train", "all"):
        raise ConfigError(f"unknown --split '{split}'; choose train or all")
    load_config(model)
    from components.checkpoints import load_tokenizer
    from components.extraction_audit import AuditConfig, extraction_audit
    from components.runtime import load_flexo_model
    from components.user_data import load_directory

    corpus = load_directory(data)
    texts = corpus.training_texts() if split == "train" else corpus.texts()
    result = extraction_audit(load_flexo_model(model), load_tokenizer(model), texts,
                              AuditConfig(documents=documents, samples=samples, seed=seed))
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
        return
    out.print(f"extracted {result.extracted} of {result.documents} documents: "
              f"{result.rate:.1%} (95% CI {result.ci_low:.1%}-{result.ci_high:.1%}); "
              f"mean best similarity {result.mean_best_similarity:.3f}")

