"""`flexo evaluate`: held-out perplexity of a model, per domain."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated

import typer

from components.errors import ConfigError
from flows.cli.app import app, command
from flows.cli.options import JsonOpt
from flows.cli.render import perplexity_table


def held_out_corpora(data: list[Path] | None) -> list:
    """Each of the user's directories as one domain (named after the directory), or every
    built-in domain's test split."""
    if data:
        from components.user_data import load_directory

        names = [d.name for d in data]
        if len(set(names)) < len(names):
            raise ConfigError(f"--data directories must have different names (they name the "
                              f"domains), got {', '.join(names)}")
        return [load_directory(d) for d in data]
    from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC, load_domain

    return [load_domain(name).split("test") for name in (PUBLIC, *PRIVATE_DOMAINS)]


def write_csv(path: Path, model: Path, results: list) -> None:
    """One row per domain (a DVC plots source), replaced all at once."""
    from components.atomic import atomic_write

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["domain", "model", "perplexity", "nll", "tokens"])
    for r in results:
        writer.writerow([r.domain.split(":")[0], model.name, f"{r.perplexity:.4f}", f"{r.nll:.6f}",
                         r.tokens])
    atomic_write(path, buffer.getvalue())


@command(app)
def evaluate(
    model: Annotated[Path, typer.Option(help="HF checkpoint directory.")],
    data: Annotated[list[Path] | None, typer.Option(
        help="Directory of held-out text, one domain named after it (repeat for several; "
             "default: the built-in test splits).")] = None,
    as_json: JsonOpt = False,
    max_tokens: Annotated[int, typer.Option(help="Tokens per domain.")] = 65_536,
    csv_file: Annotated[Path | None, typer.Option(
        "--csv", help="Also write domain,model,perplexity,nll,tokens rows to this file "
                      "(a DVC plots source).")] = None,
) -> None:
    """Token-weighted held-out perplexity on the public mix and each domain."""
    from components.checkpoints import load_config

    load_config(model)  # a bad model path fails before any text is read
    corpora = held_out_corpora(data)
    from components.evaluation import evaluate_model
    from flows.withdrawals import deny_list_path

    results = evaluate_model(model, corpora, max_tokens=max_tokens, deny_list=deny_list_path())
    if csv_file is not None:
        write_csv(csv_file, model, results)
    perplexity_table(results, f"Held-out perplexity of {model}", as_json)
