"""`flexo demo`: the whole story on the built-in corpora in a fresh FLEXO_HOME."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

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


def release_state(release, answers: dict, promoted: bool) -> str:
    """`production`, or why the release stayed a candidate."""
    if promoted:
        return "production"
    why = [f"gate failed: {'; '.join(release.record.gate.failures())}"] \
        if not release.gate_passed else []
    why += [f"{c} rejected it" for c, a in answers.items() if not a.accepted]
    return f"candidate ({', '.join(why) or 'not promoted'})"


def acceptance_table(answers: dict[int, dict]) -> None:
    """Each contributor's answer per release: measured on its own held-out text, its machine."""
    table = Table(title="Contributors' acceptance: own held-out text, on their machines")
    for col in ("release", "contributor", "anchor", "release ppl", "change", "own routing",
                "public routing", "answer"):
        table.add_column(col, justify="left" if col in ("contributor", "answer") else "right",
                         no_wrap=True)
    for version, by_contributor in answers.items():
        for contributor, a in by_contributor.items():
            table.add_row(f"v{version}", contributor, f"{a.anchor_perplexity:,.2f}",
                          f"{a.release_perplexity:,.2f}", f"{a.change:+.1%}",
                          f"{a.own_routing_share:.0%}", f"{a.public_routing_share:.0%}",
                          "accepted" if a.accepted else "rejected")
    out.print(table)


@command(app, log=None)  # its log starts once its home is chosen
def demo(quick: Annotated[bool, typer.Option(help="Tiny preset: a couple of minutes.")] = False,
         ) -> None:
    """The whole story on built-in corpora, from the anchor to releases the contributors accept.

    Anchor, three contributors (proxies, training, audit), reviews, a candidate release each
    contributor measures and accepts, a withdrawal and the re-release, all recorded in MLflow
    and Prefect under FLEXO_HOME."""
    from flows.settings import prepare_prefect, start_prefect_server

    started = time.monotonic()
    home = fresh_home()
    prepare_prefect()
    with command_log("demo", verbose(), libraries=FLOW_LIBRARIES) as log:
        prefect_ready = start_prefect_server()
        from flows.demo import WITHDRAWING, demo_flow  # torch, transformers, MLflow: seconds

        prefect_ready()
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
    acceptance_table(result.answers)
    for r in (first, second):
        out.print(f"flexo-release v{r.version}: experts "
                  f"{', '.join(e.contributor for e in r.record.experts)}; "
                  f"{release_state(r, result.answers[r.version], result.production[r.version])}",
                  soft_wrap=True)
    gone = result.withdrawal
    if gone is not None:
        verified = (f"v{gone.verified_release} verified free of it by hash"
                    if gone.verified_release else "no release verified free of it yet")
        out.print(f"{gone.contributor} withdrawn: {len(gone.tensor_hashes)} tensors fingerprinted, "
                  f"{len(gone.purged)} locations purged; {verified}", soft_wrap=True)
    prefect_home = os.environ.get("PREFECT_HOME", str(home / "prefect"))
    out.print(f"\nfinished in {(time.monotonic() - started) / 60:.1f} minutes. Look around:")
    for line in ((f"mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'}   # runs, "
                 "registry, lineage; http://127.0.0.1:5000"),
                 (f"PREFECT_HOME={prefect_home} prefect server start   # flow runs and events; "
                 "http://127.0.0.1:4200"),
                 f"FLEXO_HOME={home} flexo lineage --release {second.version}",
                 f"FLEXO_HOME={home} flexo ledger verify",
                 f"FLEXO_HOME={home} flexo generate --prompt 'def main(' --exclude code-commons"):
        out.print(f"  {line}", highlight=False, soft_wrap=True)
    log_hint(log)
