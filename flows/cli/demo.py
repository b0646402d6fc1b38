"""`flexo demo`: the whole story on the built-in corpora in a fresh FLEXO_HOME."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import FLOW_LIBRARIES, app, command, out, verbose
from flows.cli.console import StoryDisplay, command_log
from flows.cli.render import log_hint, release_figures


def fresh_home() -> Path:
    """FLEXO_HOME when it holds no state yet; else a new directory inside it (said so), so a
    second demo never mixes its registry with the first's."""
    from components.clock import stamp
    from flows.settings import flexo_home

    home = flexo_home()
    if home.exists() and any(home.iterdir()):
        home = home / f"demo-{stamp()}"
        os.environ["FLEXO_HOME"] = str(home)
        out.print(f"FLEXO_HOME holds earlier state; this demo runs in {home} "
                  f"(export FLEXO_HOME={home} to work with its results)", soft_wrap=True)
    home.mkdir(parents=True, exist_ok=True)
    return home


@command(app, log=None)  # its log starts once its home is chosen
def demo(quick: Annotated[bool, typer.Option(help="Tiny preset: a couple of minutes.")] = False,
         ) -> None:
    """The whole story on built-in corpora: anchor, three contributors, reviews, release,
    a withdrawal and the re-release, all recorded in MLflow and Prefect under FLEXO_HOME."""
    from flows.settings import prepare_prefect

    started = time.monotonic()
    home = fresh_home()
    prepare_prefect()
    with command_log("demo", verbose(), libraries=FLOW_LIBRARIES) as log:
        from flows.demo import WITHDRAWING, demo_flow

        out.print(f"[bold]flexo demo[/bold] ({'quick, tiny' if quick else 'small'} preset) in "
                  f"{home}", soft_wrap=True)
        with StoryDisplay(out) as display:
            result = demo_flow(home, quick, say=display.step)
    first, second = result.first, result.after_withdrawal
    release_figures(first.record.figures,
                    f"Held-out perplexity: anchor, release v{first.version}, and v{second.version} "
                    f"after {WITHDRAWING} withdrew",
                    extra={"after withdrawal": {d: f.release
                                                for d, f in second.record.figures.items()}})
    for r in (first, second):
        state = "production" if r.promoted else "candidate (gate failed: " + \
            "; ".join(r.record.gate.failures()) + ")"
        out.print(f"flexo-release v{r.version}: experts "
                  f"{', '.join(e.contributor for e in r.record.experts)}; {state}",
                  soft_wrap=True)
    prefect_home = os.environ.get("PREFECT_HOME", str(home / "prefect"))
    out.print(f"\nfinished in {(time.monotonic() - started) / 60:.1f} minutes. Look around:")
    for line in ((f"mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'}   # runs, "
                 "registry, lineage; http://127.0.0.1:5000"),
                 (f"PREFECT_HOME={prefect_home} prefect server start   # flow runs and events; "
                 "http://127.0.0.1:4200"),
                 f"FLEXO_HOME={home} flexo lineage --release {second.version}",
                 f"FLEXO_HOME={home} flexo generate --prompt 'def main(' --exclude code-commons"):
        out.print(f"  {line}", highlight=False, soft_wrap=True)
    log_hint(log)
