"""`flexo anchor train|import|register`: the public anchor model (`register`: the anchor flow,
into the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import FLOW_LIBRARIES, command, out, sub_app
from flows.cli.console import StoryDisplay
from flows.cli.options import DeviceOpt, FsdpOpt, OutOpt, Preset

anchor_app = sub_app("anchor", "The public anchor model.")


@command(anchor_app, "train")
def anchor_train(
    out_dir: OutOpt,
    preset: Annotated[Preset, typer.Option(help="Model size.")] = Preset.small,
    data: Annotated[Path | None, typer.Option(help="Train on this directory of public text "
                                              "instead of the built-in public mix.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: DeviceOpt = None,
    fsdp: FsdpOpt = False,
) -> None:
    """Train the public anchor (OLMo-2) from scratch and save it as an HF checkpoint."""
    from components.atomic import check_output_dir

    check_output_dir(out_dir)
    if data is not None:
        from components.user_data import load_directory

        corpus = load_directory(data)
    else:
        from components.builtin_corpora import PUBLIC, load_domain

        corpus = load_domain(PUBLIC)
    from components.anchor import train_anchor

    card = train_anchor(out_dir, preset.value, corpus, seed=seed, device=device, fsdp=fsdp)
    if card is not None:  # under torchrun, rank 0 saved it and speaks
        out.print(f"anchor written to {out_dir} ({card.parameters:,} parameters, "
                  f"final loss {card.final_loss:.3f}, fingerprint {card.fingerprint[:16]})")


@command(anchor_app, "import")
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


@command(anchor_app, "register", log=FLOW_LIBRARIES)
def anchor_register(
    preset: Annotated[Preset, typer.Option(help="Model size to train.")] = Preset.small,
    source: Annotated[str | None, typer.Option(
        "--from", help="Import this checkpoint (directory or hub id) instead of training.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: DeviceOpt = None,
) -> None:
    """The operator's anchor flow: train (or import) the anchor and register it as flexo-anchor."""
    from flows.anchor import anchor_flow

    with StoryDisplay(out):
        result = anchor_flow(preset=preset.value, source=source, seed=seed, device=device)
    out.print(f"flexo-anchor version {result.version} registered (fingerprint "
              f"{result.fingerprint[:16]}); files in {result.directory}")
