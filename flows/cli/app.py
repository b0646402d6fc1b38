"""The `flexo` Typer app, its consoles, and the error mapping every command shares.

Heavy libraries (torch, transformers, MLflow, Prefect) are imported inside commands so
`flexo --help` stays fast. Library errors (`FlexoError`), invalid option values (pydantic) and
usage errors (an unknown choice, a missing option) all become one line `error: ...` on stderr and
a non-zero exit code, never a traceback or a box.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from typer.core import TyperGroup

from components.errors import ConfigError, FlexoError, GovernanceError

out = Console()
err = Console(stderr=True)


class OneLineErrors(TyperGroup):
    """Click's usage errors (a bad choice, a missing option) as one `error:` line, exit code 2,
    like every other refusal; `--help` and the commands themselves are untouched."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as e:  # Typer's (vendored) click.ClickException
            ctx = getattr(e, "ctx", None)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            message = e.format_message().replace("Value error, ", "")
            err.print(f"[red]error:[/red] {message}{hint}", highlight=False, soft_wrap=True)
            if not standalone_mode:
                raise
            sys.exit(e.exit_code)
        except typer.Abort:
            err.print("interrupted; nothing was written")
            if not standalone_mode:
                raise
            sys.exit(130)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(cls=OneLineErrors, help="flexo: closed-data experts merged into an open model, "
                  "with opt-out.", no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)


# `flexo --verbose`, for the command this invocation runs (a context variable, not a global:
# each invocation sets its own).
VERBOSE: ContextVar[bool] = ContextVar("flexo_verbose", default=False)


@app.callback()
def options(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also show library logs and warnings on the console (they always "
                                "go to the log file under FLEXO_HOME/logs).")] = False) -> None:
    VERBOSE.set(verbose)


def verbose() -> bool:
    return VERBOSE.get()


def sub_app(name: str, help: str, no_args_is_help: bool = True) -> typer.Typer:
    """A command group (`flexo anchor ...`), registered on the app."""
    group = typer.Typer(name=name, help=help, no_args_is_help=no_args_is_help)
    app.add_typer(group, name=name)
    return group


MODEL_LIBRARIES = ("transformers",)
FLOW_LIBRARIES = ("transformers", "prefect", "mlflow")


def command(group: typer.Typer, name: str | None = None,
            log: tuple[str, ...] | None = MODEL_LIBRARIES,
            default: bool = False) -> Callable[..., Any]:
    """Register a command on `group` with flexo's error mapping; unless `log` is None, its run
    writes the `log` libraries' chatter (and Python's warnings) to a file under FLEXO_HOME/logs
    instead of the console (`flows.cli.console.command_log`).

    `default`: the group's own command, run when no subcommand is named (`flexo release` builds,
    `flexo release status` reports); it takes `ctx: typer.Context` and does nothing when a
    subcommand follows."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        body = fn
        if log is not None:
            label = "-".join(x for x in (group.info.name, name or fn.__name__) if x)
            label = group.info.name if default else label

            @functools.wraps(fn)
            def body(*args: Any, **kwargs: Any) -> Any:
                from flows.cli.console import command_log

                if default and kwargs["ctx"].invoked_subcommand:
                    return None
                if "prefect" in log:
                    from flows.settings import prepare_prefect

                    prepare_prefect()  # before Prefect is first imported
                with command_log(label.replace("_", "-"), verbose(), libraries=log):
                    return fn(*args, **kwargs)

        if default:
            return group.callback(invoke_without_command=True)(friendly_errors(body))
        return group.command(name)(friendly_errors(body))

    return register


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map library errors to `error: <message>` and the error's exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FlexoError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except ValidationError as e:  # an option that a config model refused
            err.print(f"[red]error:[/red] {invalid_option(e)}", highlight=False, soft_wrap=True)
            raise typer.Exit(ConfigError.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted; nothing was written")
            raise typer.Exit(130) from None
        except Exception as e:
            refusal, failure = server_refusal(e), server_failure(e)
            if refusal is None and failure is None:
                raise
            err.print(f"[red]error:[/red] {refusal or failure}", highlight=False, soft_wrap=True)
            raise typer.Exit(GovernanceError.exit_code if refusal else 1) from None

    return wrapper


def server_failure(error: Exception) -> str | None:
    """A server that stayed down or failed after the clients' own retries (Prefect's httpx,
    MLflow's requests), as one line; None for any other error."""
    module = type(error).__module__.split(".")[0]
    if module == "httpx" or (module == "mlflow" and "Max retries exceeded" in str(error)):
        request = getattr(error, "request", None)
        where = f" at {request.url.host}:{request.url.port}" if request is not None else ""
        return (f"a server{where} did not answer after retries ({type(error).__name__}: "
                f"{str(error).splitlines()[0][:200]}); check `flexo infra status` and run the "
                f"command again")
    return None


def server_refusal(error: Exception) -> str | None:
    """An MLflow server's 401 or 403 as one line (who was refused, what, and the fix), or None
    for any other error. By the error code MLflow's client raises, so MLflow is not imported
    for commands that never talk to it."""
    code = getattr(error, "error_code", None)
    if code not in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return None
    import os

    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(no user)")
    message = str(error).removeprefix(f"{code}: ")
    if "Response body: 'Permission denied'" in message:  # MLflow's own per-model refusal
        endpoint = message.split("endpoint ")[1].split(" ")[0] if "endpoint " in message else "?"
        message = (f"the MLflow server does not let '{user}' call {endpoint} (permission "
                   f"denied); an operator grants roles in the policy and runs `flexo infra "
                   f"users sync`")
    if code == "UNAUTHENTICATED":
        message = (f"the MLflow server refused the credentials of '{user}'; set "
                   f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (`flexo infra env "
                   f"--user NAME`)")
    return f"refused by the MLflow server: {message}"


def invalid_option(error: ValidationError) -> str:
    """The first problem pydantic found, as `invalid option dp.epsilon: <why>`."""
    first = error.errors()[0]
    why = first["msg"].removeprefix("Value error, ")
    where = ".".join(str(part) for part in first["loc"])
    return f"invalid option {where}: {why}" if where else f"invalid options: {why}"


def checked_contributor(value: str) -> str:
    """A contributor id as governance defines it, or a one-line ConfigError."""
    from governance.contributors import InvalidContributorId, validate_contributor_id

    try:
        return validate_contributor_id(value)
    except InvalidContributorId as e:
        raise ConfigError(str(e)) from None


def main() -> None:
    """The `flexo` console script. Prefect stops its temporary server at interpreter exit and
    says so at INFO, after the command's log has closed: for a log, not for the user."""
    import logging

    try:
        app(prog_name="flexo")
    finally:
        logging.getLogger("prefect").setLevel(logging.WARNING)
