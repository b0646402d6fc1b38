"""`flexo data list|export`: the built-in corpora."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.app import command, out, sub_app
from flows.cli.options import Domain

data_app = sub_app("data", "Built-in corpora and contributor data.")


class Split(str, Enum):
    train = "train"
    validation = "validation"
    test = "test"
    all = "all"


@command(data_app, "list", log=None)
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


@command(data_app, "export", log=None)
def data_export(
    domain: Annotated[Domain, typer.Option(help="Built-in domain.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New directory for the text.")],
    split: Annotated[Split, typer.Option(help="Which split.")] = Split.all,
) -> None:
    """Write a built-in corpus as a directory that `--data DIR` reads back (one .jsonl file)."""
    from components.atomic import check_output_dir
    from components.builtin_corpora import load_domain
    from components.user_data import write_directory

    check_output_dir(out_dir)
    corpus = load_domain(domain.value)
    if split is not Split.all:
        corpus = corpus.split(split.value)
    write_directory(corpus, out_dir, f"{domain.value}-{split.value}")
    out.print(f"{domain.value} ({split.value}) written to {out_dir}: {len(corpus.documents):,} "
              f"documents, {corpus.size_bytes / 1e6:.1f} MB, fingerprint "
              f"{corpus.fingerprint().digest[:16]}", soft_wrap=True, highlight=False)
