"""`flexo demo`: the whole story on the built-in corpora in a fresh FLEXO_HOME."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_app import app, friendly_errors, out, quiet_console


def _fresh_home() -> Path:
    """FLEXO_HOME when it holds no state yet; else a new directory inside it (said so), so a
    second demo never mixes its registry with the first's."""
    from flows.settings import flexo_home

    home = flexo_home()
    if home.exists() and any(home.iterdir()):
        home = home / f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}"
        os.environ["FLEXO_HOME"] = str(home)
        out.print(f"FLEXO_HOME holds earlier state; this demo runs in {home} "
                  f"(export FLEXO_HOME={home} to work with its results)")
    home.mkdir(parents=True, exist_ok=True)
    return home


@app.command()
@friendly_errors
def demo(quick: Annotated[bool, typer.Option(help="Tiny preset: a couple of minutes.")] = False,
         ) -> None:
    """The whole story on built-in corpora: anchor, three contributors, reviews, release,
    a withdrawal and the re-release, all recorded in MLflow and Prefect under FLEXO_HOME."""
    started = time.monotonic()
    home = _fresh_home()
    from flows.settings import prepare_prefect

    prepare_prefect()
    quiet_console()
    from flows.cli_release import print_figures
    from flows.demo import WITHDRAWING, run_demo

    out.print(f"[bold]flexo demo[/bold] ({'quick, tiny' if quick else 'small'} preset) in {home}")
    result = run_demo(home, quick, say=lambda step: out.print(f"[bold cyan]{step}[/bold cyan]"))
    first, second = result.first, result.after_withdrawal
    print_figures(first.record.figures,
                  f"Held-out perplexity: anchor, release v{first.version}, and v{second.version} "
                  f"after {WITHDRAWING} withdrew",
                  extra={"after withdrawal": {d: f.release
                                              for d, f in second.record.figures.items()}})
    for r in (first, second):
        state = "production" if r.promoted else "candidate (gate failed: " + \
            "; ".join(r.record.gate.failures()) + ")"
        out.print(f"flexo-release v{r.version}: experts "
                  f"{', '.join(e.contributor for e in r.record.experts)}; {state}")
    prefect_home = os.environ.get("PREFECT_HOME", str(home / "prefect"))
    out.print(f"\nfinished in {(time.monotonic() - started) / 60:.1f} minutes. Look around:")
    out.print(f"  mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'}   "
              f"# runs, registry, lineage; http://127.0.0.1:5000", highlight=False, soft_wrap=True)
    out.print(f"  PREFECT_HOME={prefect_home} prefect server start   "
              f"# flow runs and events; http://127.0.0.1:4200", highlight=False, soft_wrap=True)
    out.print(f"  FLEXO_HOME={home} flexo lineage --release {second.version}", highlight=False,
              soft_wrap=True)
    out.print(f"  FLEXO_HOME={home} flexo generate --prompt 'def main(' --exclude code-commons",
              highlight=False, soft_wrap=True)
