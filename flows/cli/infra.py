"""`flexo infra up|down|stop|status|env|users sync|events`: the consortium's servers on one
machine (infra/local's scripts: PostgreSQL, MLflow with flexo's auth app, Prefect server and
worker, the events receiver), the policy's identities on them, and the receiver itself."""

from __future__ import annotations

import os
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from components.errors import ConfigError, FlexoError
from flows.cli.app import command, err, out, sub_app

SCRIPTS = Path(__file__).resolve().parents[2] / "infra" / "local"
group = sub_app("infra", "The consortium's servers on this machine (MLflow with auth, Prefect, "
                "PostgreSQL) and the policy's users on them.")
users = typer.Typer(name="users", help="MLflow users and permissions from the policy.",
                    no_args_is_help=True)
group.add_typer(users, name="users")

DirOpt = Annotated[Path | None, typer.Option(
    "--dir", help="Where the servers keep data, logs and secrets (default: $FLEXO_HOME/infra).")]


class Server(str, Enum):
    events = "events"
    worker = "worker"
    prefect = "prefect"
    mlflow = "mlflow"
    postgres = "postgres"


class InfraError(FlexoError):
    """A server script failed; its own last lines say why."""


def infra_dir(given: Path | None) -> Path:
    from flows.settings import flexo_home

    return (given or Path(os.environ.get("FLEXO_INFRA_DIR") or flexo_home() / "infra")).resolve()


def _script(name: str, directory: Path, *args: str) -> int:
    env = os.environ | {"FLEXO_INFRA_DIR": str(directory),
                        "FLEXO_INFRA_BIN": str(Path(sys.executable).parent)}
    return subprocess.run(["bash", str(SCRIPTS / f"{name}.sh"), *args], env=env,
                          check=False).returncode


def client_environment(directory: Path, user: str | None) -> dict[str, str]:
    """What a client of these servers sets: the URIs, and `user`'s credentials."""
    from flows.settings import read_env_file

    files = [directory / "client.env"] + ([directory / "credentials" / f"{user}.env"] if user
                                          else [])
    values: dict[str, str] = {}
    for path in files:
        if not path.is_file():
            raise ConfigError(f"{path} does not exist; run `flexo infra up` (URIs) and "
                              f"`flexo infra users sync` (a user's credentials) first")
        values |= read_env_file(path)
    return values


@command(group, log=None)
def up(directory: DirOpt = None) -> None:
    """Start PostgreSQL, the MLflow server (auth on) and the Prefect server with a worker."""
    directory = infra_dir(directory)
    if _script("up", directory):
        raise InfraError(f"the servers did not all start; logs are in {directory / 'logs'}")
    err.print(f"[dim]clients: `eval \"$(flexo infra env --user NAME)\"`; data, logs and secrets "
              f"in {directory}[/dim]", highlight=False)


@command(group, log=None)
def down(directory: DirOpt = None) -> None:
    """Stop every server `up` started; their data stays."""
    if _script("down", infra_dir(directory)):
        raise InfraError("a server did not stop; see `flexo infra status`")


@command(group, log=None)
def stop(servers: Annotated[list[Server], typer.Argument(help="The servers to stop.")],
         directory: DirOpt = None) -> None:
    """Stop some servers (`up` starts again whatever is not running): to restart one, or to
    take one away and see what the others do."""
    if _script("stop", infra_dir(directory), *(s.value for s in servers)):
        raise InfraError("a server did not stop; see `flexo infra status`")


@command(group, log=None)
def status(directory: DirOpt = None) -> None:
    """One line per server; exit code 1 unless all are running."""
    raise typer.Exit(_script("status", infra_dir(directory)))


@command(group, log=None)
def env(directory: DirOpt = None,
        user: Annotated[str | None, typer.Option(help="Also this user's MLflow credentials "
                                                  "(written by `users sync`).")] = None) -> None:
    """Shell `export` lines for a client of these servers."""
    for name, value in client_environment(infra_dir(directory), user).items():
        out.print(f"export {name}={value}", highlight=False, soft_wrap=True)


@command(users, log=("mlflow",))
def sync(directory: DirOpt = None) -> None:
    """Create the policy's users on the MLflow server and grant what their roles allow."""
    from flows.policy import policy_in_force
    from flows.tracking.users import admin_environment
    from flows.tracking.users import sync as sync_users

    directory = infra_dir(directory)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or \
        client_environment(directory, None)["MLFLOW_TRACKING_URI"]
    if not uri.startswith(("http://", "https://")):
        raise ConfigError(f"MLFLOW_TRACKING_URI={uri} is not a server; users exist only on an "
                          f"MLflow server (`flexo infra up`)")
    os.environ.update(admin_environment(directory / "secrets.env"))
    report = sync_users(policy_in_force(), uri, directory / "credentials")
    for user in report.created_users:
        out.print(f"user {user} created: credentials in {directory / 'credentials' / user}.env",
                  highlight=False)
    for grant in report.granted:
        out.print(f"{grant.user}: {grant.permission} on {grant.kind} {grant.name}",
                  highlight=False)
    for gone in report.revoked:
        out.print(f"{gone.user}: {gone.held} on {gone.kind} {gone.name} revoked (the policy no "
                  f"longer gives it)", highlight=False)
    out.print(f"{len(report.created_users)} users created, {len(report.existing_users)} "
              f"existed; {len(report.granted)} permissions granted, {len(report.revoked)} "
              f"revoked, {report.unchanged} unchanged", highlight=False)


@command(group, log=("mlflow", "prefect"))
def events(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5056,
    public_url: Annotated[str | None, typer.Option(
        help="The URL MLflow posts to (default: http://HOST:PORT/mlflow).")] = None,
) -> None:
    """Receive MLflow's registry webhooks (HMAC-checked): put back a `production` moved by hand
    to an unaccepted release, and pass each change on as a Prefect event. Needs
    FLEXO_WEBHOOK_SECRET and an operator's MLflow credentials."""
    import uvicorn

    from flows.infra.events_receiver import create_app
    from flows.infra.production_guard import guard_production
    from flows.tracking import runs
    from flows.tracking.webhooks import register_webhook

    secret = os.environ.get("FLEXO_WEBHOOK_SECRET", "")
    if len(secret) < 16:
        raise ConfigError("FLEXO_WEBHOOK_SECRET is unset or shorter than 16 characters; set "
                          "the secret MLflow signs its webhooks with (`flexo infra up` makes one)")
    runs.configure()
    url = public_url or f"http://{host}:{port}/mlflow"
    register_webhook(url, secret)
    revert = guard_production()  # what happened while no receiver was listening
    if revert is not None:
        err.print(f"production was v{revert.moved_to}, which may not be production "
                  f"({'; '.join(revert.blockers)}): put back to "
                  f"{f'v{revert.restored}' if revert.restored else 'none'}", highlight=False)
    err.print(f"receiving MLflow webhooks at {url}", highlight=False)
    uvicorn.run(create_app(secret), host=host, port=port, log_level="info")
