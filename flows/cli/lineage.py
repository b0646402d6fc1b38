"""`flexo lineage`: the chain behind a release, read from MLflow alone."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.app import app, command, out


@command(app, log=("mlflow",))
def lineage(version: Annotated[int, typer.Option("--release", help="flexo-release version.")],
            ) -> None:
    """The chain behind a release, read from MLflow: anchor, experts, reviews, runs."""
    from flows.tracking.lineage import release_lineage

    chain = release_lineage(version)
    out.print(f"[bold]flexo-release v{chain.version}[/bold] aliases "
              f"{', '.join(chain.aliases) or '-'}; gate {chain.gate}; release run "
              f"{chain.release_run_id}; evaluation run {chain.evaluation_run_id}", soft_wrap=True)
    out.print(f"anchor: flexo-anchor v{chain.anchor_version} (fingerprint "
              f"{chain.anchor_fingerprint[:16]}, run {chain.anchor_run_id})", soft_wrap=True)
    for e in chain.experts:  # one line each, never truncated: run ids are for copying
        out.print(f"expert {e.contributor}: {e.registered_model} v{e.version} ({e.status}); data "
                  f"fingerprint {e.data_fingerprint[:16]}; reviewed by {e.reviewed_by} "
                  f"({e.reviewer_kind}) {e.reviewed_at}; contribute run {e.contribute_run_id}; "
                  f"training run {e.training_run_id or '-'}", soft_wrap=True, highlight=False)
    if chain.excluded:
        out.print(f"not included: {', '.join(chain.excluded)}")
