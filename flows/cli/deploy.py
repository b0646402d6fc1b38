"""`flexo deploy`: register prefect.yaml's deployments (each contributor's schedule, the release and
withdrawal triggers) on the Prefect server that PREFECT_API_URL names.

Registration is Prefect's own `prefect --no-prompt deploy`, run as a subprocess, so `flexo deploy`
and a user's plain `prefect deploy --all` give the same deployments. Around it flexo refuses early
what cannot work (no server, unknown names), creates the work pools the file names and reads the
result back from the server, so a deployment Prefect skipped is an error, not a silent gap.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from components.errors import ConfigError, FlexoError
from flows.cli.app import app, command, err, out

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.responses import DeploymentResponse

PREFECT_FILE = Path(__file__).resolve().parents[2] / "prefect.yaml"
# Pools that prefect.yaml names and the server lacks are created as process pools: flows run as
# subprocesses of `prefect worker start --pool <name>` on the machine that holds the checkout.
POOL_TYPE = "process"
CRASH_RECOVERY = "flexo: rerun a crashed contribution"
SILENT_RUNS = "flexo: a contribution without heartbeats has crashed"
NO_SERVER = ("deployments need a running Prefect server: start one with `prefect server start` "
             "and set PREFECT_API_URL=http://127.0.0.1:4200/api")


class DeployError(FlexoError):
    """`prefect deploy` failed, or the server lacks a deployment after it ran."""


@command(app, log=None)
def deploy(
    prefect_file: Annotated[Path, typer.Option(
        "--prefect-file", help="The Prefect deployment file.")] = PREFECT_FILE,
    names: Annotated[list[str] | None, typer.Option(
        "--name", help="Deploy only this deployment (repeatable); default: all of them.")] = None,
    crash_after: Annotated[int, typer.Option(
        "--crash-after", min=60, help="Seconds without a heartbeat after which a contribution "
        "run counts as crashed (its worker died) and is run again, resuming from its last "
        "checkpoint; more than Prefect's heartbeat interval (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, "
        "default 180 s) on the workers.")] = 600,
) -> None:
    """Register prefect.yaml's deployments (schedules, event triggers) on the Prefect server."""
    # No `prepare_prefect()`: its FLEXO_HOME PREFECT_HOME would hide the user's Prefect profile,
    # where `prefect config set PREFECT_API_URL=...` keeps the server; deploying needs that server.
    api_url = configured_api_url()
    prefect_file = prefect_file.resolve()
    chosen = chosen_deployments(read_deployments(prefect_file), names, prefect_file)
    with prefect_client(api_url) as client:
        ensure_work_pools(client, chosen)
        ensure_crash_recovery(client, crash_after)
    log = run_prefect_deploy(prefect_file, names, api_url)
    with prefect_client(api_url) as client:
        rows = summary_rows(client, registered(client, chosen, log))
    table = Table(title=f"Deployments on {api_url}")
    table.add_column("deployment", overflow="fold")
    for column in ("schedule", "triggers", "parameters"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: `[...]` in a template is not markup
    out.print(table)
    for pool in work_pools(chosen):
        out.print(f"runs start when a worker serves them: prefect worker start --pool {pool}")


def configured_api_url() -> str:
    """The server PREFECT_API_URL names: the environment first, then the active Prefect profile
    (`prefect config set PREFECT_API_URL=...`), Prefect's own order."""
    if url := os.environ.get("PREFECT_API_URL"):
        return url
    from prefect.settings import get_current_settings

    if url := get_current_settings().api.url:
        return url
    raise ConfigError(NO_SERVER)


def read_deployments(prefect_file: Path) -> list[dict[str, Any]]:
    """The deployments of a prefect.yaml, YAML anchors and merge keys resolved."""
    import yaml

    if not prefect_file.is_file():
        raise ConfigError(f"no deployment file at {prefect_file}: pass --prefect-file PATH")
    try:
        spec = yaml.safe_load(prefect_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{prefect_file} is not valid YAML{at}: fix it, then deploy again"
                          ) from None
    deployments = spec.get("deployments") if isinstance(spec, dict) else None
    if not deployments or not all(isinstance(d, dict) and d.get("name") for d in deployments):
        raise ConfigError(f"{prefect_file} declares no named deployments under `deployments:`")
    return deployments


def chosen_deployments(deployments: list[dict[str, Any]], names: list[str] | None,
                       prefect_file: Path) -> list[dict[str, Any]]:
    """The deployments `--name` selects (all of them without it); an unknown name is refused."""
    if not names:
        return deployments
    known = {d["name"]: d for d in deployments}
    if unknown := [n for n in names if n not in known]:
        raise ConfigError(f"no deployment named {unknown[0]!r} in {prefect_file}: "
                          f"choose from {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


@contextmanager
def prefect_client(api_url: str) -> Iterator[SyncPrefectClient]:
    """A client of the server at `api_url` (whatever Prefect's settings say), checked reachable."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), \
            get_client(sync_client=True) as client:
        if (problem := client.api_healthcheck()) is not None:
            raise ConfigError(f"no Prefect server answers at {api_url} "
                              f"({type(problem).__name__}): start one with `prefect server "
                              "start` or point PREFECT_API_URL at a running one")
        yield client


def work_pools(chosen: list[dict[str, Any]]) -> list[str]:
    """The work pools the deployments name."""
    return sorted({d["work_pool"]["name"] for d in chosen
                   if isinstance(d.get("work_pool"), dict) and d["work_pool"].get("name")})


def ensure_crash_recovery(client: SyncPrefectClient, crash_after: int) -> None:
    """The automations that rerun a contribution whose worker died. A `contribute` run that
    ends Crashed (its process killed: Prefect's engine reports it) or whose heartbeats stop for
    `crash_after` seconds without a final state (the machine is gone: marked Crashed here) runs
    again from its deployment, with the same (default) parameters; its training resumes from
    the last checkpoint beside the module cache. Each is replaced when it differs."""
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    contribution = {"match": {"prefect.resource.id": "prefect.flow-run.*"},
                    "match_related": {"prefect.resource.id": "prefect.tag.contribute"}}
    final = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled",
                                                        "Crashed")}
    wanted = [
        AutomationCore(
            name=SILENT_RUNS, description="flexo deploy: a contribution run without heartbeats "
            "is marked crashed (its machine is gone)",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.heartbeat",
                                                              *final},
                for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
                within=timedelta(seconds=crash_after), **contribution),
            actions=[ChangeFlowRunState(state=StateType.CRASHED, message=(
                f"no heartbeat for {crash_after} s: its worker died"))]),
        AutomationCore(
            name=CRASH_RECOVERY, description="flexo deploy: a crashed contribution runs again "
            "and resumes from its last checkpoint",
            trigger=EventTrigger(expect={"prefect.flow-run.Crashed"}, posture=Posture.Reactive,
                                 threshold=1, within=timedelta(0), **contribution),
            actions=[RunDeployment(source="inferred")]),
    ]
    for automation in wanted:
        existing = client.read_automations_by_name(automation.name)
        keep = next((a for a in existing if a.trigger == automation.trigger
                     and a.actions == automation.actions), None)
        for stale in (a for a in existing if a is not keep):
            client.delete_automation(stale.id)
        if keep is None:
            client.create_automation(automation)
            out.print(f"created automation {automation.name!r}")


def ensure_work_pools(client: SyncPrefectClient, chosen: list[dict[str, Any]]) -> None:
    """Create each work pool the deployments name and the server lacks (a process pool)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    for pool in work_pools(chosen):
        try:
            client.read_work_pool(pool)
            continue
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(WorkPoolCreate(
                name=pool, type=POOL_TYPE,
                base_job_template=ProcessWorker.get_default_base_job_template()))
        except ObjectAlreadyExists:  # created meanwhile by someone else: just as good
            continue
        out.print(f"created work pool {pool} ({POOL_TYPE})")


def run_prefect_deploy(prefect_file: Path, names: list[str] | None, api_url: str) -> str:
    """`prefect --no-prompt deploy` in the file's directory (entrypoints and the build step that
    records the checkout are relative to it), against `api_url`; returns its output."""
    selection = [arg for n in names for arg in ("--name", n)] if names else ["--all"]
    command = [sys.executable, "-m", "prefect", "--no-prompt", "deploy",
               "--prefect-file", str(prefect_file), *selection]
    out.print(f"registering {', '.join(names) if names else 'every deployment'} "
              f"of {prefect_file} with `prefect deploy`")
    done = subprocess.run(command, cwd=prefect_file.parent, capture_output=True, text=True,
                          env={**os.environ, "PREFECT_API_URL": api_url}, check=False)
    log = done.stdout + done.stderr
    if done.returncode != 0:
        show_tail(log)
        raise DeployError(f"`prefect deploy` failed (exit {done.returncode}): its output is above")
    return log


def show_tail(log: str, lines: int = 30) -> None:
    """The end of `prefect deploy`'s output, on stderr."""
    for line in log.rstrip().splitlines()[-lines:]:
        err.print(Text(line), soft_wrap=True)


def registered(client: SyncPrefectClient, chosen: list[dict[str, Any]],
               log: str) -> list[DeploymentResponse]:
    """The server's deployment for each chosen one: same name and entrypoint, or DeployError."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    found = client.read_deployments(deployment_filter=DeploymentFilter(
        name=DeploymentFilterName(any_=[d["name"] for d in chosen])))
    by_key = {(d.name, d.entrypoint): d for d in found}
    result, missing = [], []
    for wanted in chosen:
        match = by_key.get((wanted["name"], wanted.get("entrypoint")))
        (result if match else missing).append(match or wanted["name"])
    if missing:
        show_tail(log)
        raise DeployError(f"the server has no deployment {', '.join(missing)} after `prefect "
                          "deploy`: its output is above")
    return result


def summary_rows(client: SyncPrefectClient,
                 deployments: list[DeploymentResponse]) -> list[tuple[str, str, str, str]]:
    """(flow/name, schedules, triggers, parameters) of each deployment, as the server has it."""
    flows: dict[Any, str] = {}
    rows = []
    for dep in deployments:
        if dep.flow_id not in flows:
            flows[dep.flow_id] = client.read_flow(dep.flow_id).name
        schedules = [describe_schedule(s.schedule) + ("" if s.active else " (paused)")
                     for s in dep.schedules]
        triggers, from_event = [], []
        for automation in client.read_resource_related_automations(
                f"prefect.deployment.{dep.id}"):
            trigger = automation.trigger
            expect = ", ".join(sorted(getattr(trigger, "expect", ()))) or automation.name
            match = getattr(trigger, "match", None)
            resource = match.root.get("prefect.resource.id") if match is not None else None
            triggers.append(f"{expect} ({resource})" if resource else expect)
            for action in automation.actions:
                from_event += [k for k in (getattr(action, "parameters", None) or {})
                               if k not in from_event]
        params = [f"{k}={v}" for k, v in dep.parameters.items() if v is not None]
        if from_event:
            params.append(f"from the event: {', '.join(from_event)}")
        rows.append((f"{flows[dep.flow_id]}/{dep.name}", "\n".join(schedules) or "-",
                     "\n".join(triggers) or "-", "\n".join(params) or "-"))
    return rows


def describe_schedule(schedule: Any) -> str:
    """`cron 0 2 * * 1 UTC`, `every 3600 s` or Prefect's own text for other kinds."""
    if cron := getattr(schedule, "cron", None):
        return f"cron {cron} {getattr(schedule, 'timezone', None) or 'UTC'}"
    if interval := getattr(schedule, "interval", None):
        return f"every {interval.total_seconds():.0f} s"
    return str(schedule)
