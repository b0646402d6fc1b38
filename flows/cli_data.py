"""`flexo data`, `flexo anchor` and `flexo evaluate`."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from components.errors import ConfigError
from flows.cli_app import anchor_app, app, data_app, friendly_errors, out


def _corpora(data: list[Path] | None) -> list:
    """Held-out text: each of the user's directories as one domain (named after the directory),
    or every built-in domain's test split."""
    if data:
        from components.user_data import load_directory

        names = [d.name for d in data]
        if len(set(names)) < len(names):
            raise ConfigError(f"--data directories must have different names (they name the "
                              f"domains), got {', '.join(names)}")
        return [load_directory(d) for d in data]
    from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC, load_domain

    return [load_domain(name).split("test") for name in (PUBLIC, *PRIVATE_DOMAINS)]


def _print_perplexities(results: list, as_json: bool, title: str) -> None:
    if as_json:
        rows = {r.domain.split(":")[0]: {"perplexity": r.perplexity, "nll": r.nll,
                                         "tokens": r.tokens} for r in results}
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=title)
    for col in ("domain", "perplexity", "tokens"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for r in results:
        table.add_row(r.domain.split(":")[0], f"{r.perplexity:,.2f}", f"{r.tokens:,}")
    out.print(table)


def _write_csv(path: Path, model: Path, results: list) -> None:
    """One row per domain (a DVC plots source), replaced all at once."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["domain", "model", "perplexity", "nll", "tokens"])
    for r in results:
        writer.writerow([r.domain.split(":")[0], model.name, f"{r.perplexity:.4f}", f"{r.nll:.6f}",
                         r.tokens])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(partial, path)


@data_app.command("list")
@friendly_errors
def data_list() -> None:
    """Built-in corpora with sizes and licences."""
    from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC, SOURCES, load_domain

    table = Table(title="Built-in corpora (real public text from PyPI packages)")
    for col in ("domain", "documents", "MB", "licence", "what"):
        table.add_column(col, justify="right" if col in ("documents", "MB") else "left")
    for name in (PUBLIC, *PRIVATE_DOMAINS):
        c = load_domain(name)
        licence = c.licence if name == PUBLIC else SOURCES[name].licence
        table.add_row(name, f"{len(c.documents):,}", f"{c.size_bytes / 1e6:.1f}", licence,
                      c.description)
    out.print(table)


@data_app.command("export")
@friendly_errors
def data_export(
    domain: Annotated[str, typer.Option(help="Built-in domain: public, code, legal, medical or "
                                        "literature.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New directory for the text.")],
    split: Annotated[str, typer.Option(help="train | validation | test | all")] = "all",
) -> None:
    """Write a built-in corpus as a directory that `--data DIR` reads back (one .jsonl file)."""
    from components.atomic_dir import check_output_dir
    from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC, load_domain
    from components.documents import SPLITS
    from components.user_data import write_directory

    if domain not in (PUBLIC, *PRIVATE_DOMAINS):
        raise ConfigError(f"unknown domain '{domain}'; choose one of: "
                          f"{', '.join((PUBLIC, *PRIVATE_DOMAINS))}")
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}, all")
    check_output_dir(out_dir)
    corpus = load_domain(domain)
    if split != "all":
        corpus = corpus.split(split)
    write_directory(corpus, out_dir, f"{domain}-{split}")
    out.print(f"{domain} ({split}) written to {out_dir}: {len(corpus.documents):,} documents, "
              f"{corpus.size_bytes / 1e6:.1f} MB, fingerprint {corpus.fingerprint().digest[:16]}",
              soft_wrap=True, highlight=False)


@anchor_app.command("train")
@friendly_errors
def anchor_train(
    out_dir: Annotated[Path, typer.Option("--out", help="New directory for the checkpoint.")],
    preset: Annotated[str, typer.Option(help="tiny | small | base")] = "small",
    data: Annotated[Path | None, typer.Option(help="Train on this directory of public text "
                                              "instead of the built-in public mix.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any).")] = None,
) -> None:
    """Train the public anchor (OLMo-2) from scratch and save it as an HF checkpoint."""
    from components.anchor import get_preset
    from components.atomic_dir import check_output_dir

    get_preset(preset)  # fail fast, before loading any text
    check_output_dir(out_dir)
    corpus = _public_corpus(data)
    from components.anchor import train_anchor

    card = train_anchor(out_dir, preset, corpus, seed=seed, device=device)
    out.print(f"anchor written to {out_dir} ({card.parameters:,} parameters, "
              f"final loss {card.final_loss:.3f}, fingerprint {card.fingerprint[:16]})")


def _public_corpus(data: Path | None):
    """The anchor's training text: the user's directory, or the built-in public mix."""
    if data is not None:
        from components.user_data import load_directory

        return load_directory(data)
    from components.builtin_corpora import PUBLIC, load_domain

    return load_domain(PUBLIC)


@anchor_app.command("import")
@friendly_errors
def anchor_import(
    source: Annotated[str, typer.Option("--from", help="Local HF OLMo-2 / FlexOlmo checkpoint "
                                        "directory, or a hub id when online.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Default: $FLEXO_HOME/anchor")] = None,
) -> None:
    """Adopt an existing OLMo-2 or FlexOlmo checkpoint as the anchor."""
    from components.anchor_import import import_anchor
    from components.builtin_corpora import PUBLIC, load_domain
    from flows.settings import flexo_home

    target = out_dir or flexo_home() / "anchor"
    card = import_anchor(source, target, public=lambda: load_domain(PUBLIC))
    out.print(f"anchor imported to {target} ({card.parameters:,} parameters, "
              f"fingerprint {card.fingerprint[:16]})")


@app.command()
@friendly_errors
def evaluate(
    model: Annotated[Path, typer.Option(help="HF checkpoint directory.")],
    data: Annotated[list[Path] | None, typer.Option(
        help="Directory of held-out text, one domain named after it (repeat for several; "
             "default: the built-in test splits).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    max_tokens: Annotated[int, typer.Option(help="Tokens per domain.")] = 65_536,
    csv_file: Annotated[Path | None, typer.Option(
        "--csv", help="Also write domain,model,perplexity,nll,tokens rows to this file "
                      "(a DVC plots source).")] = None,
) -> None:
    """Token-weighted held-out perplexity on the public mix and each domain."""
    from components.checkpoints import load_config

    load_config(model)  # a bad model path fails before any text is read
    corpora = _corpora(data)
    from components.evaluation import evaluate_model

    results = evaluate_model(model, corpora, max_tokens=max_tokens)
    if csv_file is not None:
        _write_csv(csv_file, model, results)
    _print_perplexities(results, as_json, title=f"Held-out perplexity of {model}")
