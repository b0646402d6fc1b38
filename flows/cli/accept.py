"""`flexo accept`: a contributor measures a candidate release on its own held-out text and
answers (the accept flow, on the contributor's machine)."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from components.errors import GovernanceError
from flows.cli.app import FLOW_LIBRARIES, app, checked_contributor, command, out
from flows.cli.console import StoryDisplay, current_log
from flows.cli.options import PiiPolicy
from flows.cli.render import log_hint


@command(app, log=FLOW_LIBRARIES)
def accept(
    contributor: Annotated[str, typer.Option(help="Your contributor id.")],
    release: Annotated[int, typer.Option(help="The flexo-release version to judge.")],
    data: Annotated[Path, typer.Option(help="Your data directory, as contributed: its held-out "
                                       "part is what the release is measured on.")],
    margin: Annotated[float, typer.Option(help="Accept only if your own-domain perplexity falls "
                                          "by at least this fraction (0: any improvement).")] = 0.0,
    pii: Annotated[PiiPolicy, typer.Option(help="PII policy your contribution used (it decides "
                                           "the held-out split).")] = PiiPolicy.redact,
    eval_tokens: Annotated[int, typer.Option(help="Held-out tokens to evaluate.")] = 16_384,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Evaluate a release on your held-out text against the anchor and accept or reject it."""
    from flows.accept import AcceptConfig, accept_flow

    cfg = AcceptConfig(margin=margin, pii=pii.value, eval_max_tokens=eval_tokens)
    with nullcontext() if as_json else StoryDisplay(out):  # --json: stdout holds JSON only
        report = accept_flow(checked_contributor(contributor), release, data, cfg)
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        out.print(f"release {release} on your held-out text: perplexity "
                  f"{report.anchor_perplexity:.2f} (anchor) -> {report.release_perplexity:.2f} "
                  f"({report.change:+.1%}); your expert gets {report.own_routing_share:.0%} of "
                  f"router mass on your text, {report.public_routing_share:.0%} on public text")
        log_hint(current_log())
    if not report.accepted:
        raise GovernanceError(f"rejected: own-domain perplexity {report.change:+.1%}, must fall "
                              f"by at least {margin:.1%}; recorded on release {release}")
    if not as_json:
        out.print(f"accepted flexo-release version {release}; recorded")
