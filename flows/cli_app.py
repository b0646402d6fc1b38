"""The `flexo` Typer app, its consoles and the error mapping every command shares.

Heavy libraries (torch, transformers) are imported inside commands so `flexo --help` stays fast.
Library errors (`FlexoError`) become one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console

from components.errors import ConfigError, FlexoError

app = typer.Typer(help="flexo: closed-data experts merged into an open model, with opt-out.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
anchor_app = typer.Typer(help="The public anchor model.", no_args_is_help=True)
data_app = typer.Typer(help="Built-in corpora and contributor data.", no_args_is_help=True)
app.add_typer(anchor_app, name="anchor")
expert_app = typer.Typer(help="Expert modules (the contributor's step).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(expert_app, name="expert")

out = Console()
err = Console(stderr=True)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map library errors to `error: <message>` and the error's exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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

    return wrapper


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


def _subclass_names(cls: type) -> set[str]:
    return {cls.__name__}.union(*(_subclass_names(sub) for sub in cls.__subclasses__()))


class _HideExpectedFailures(logging.Filter):
    """Prefect logs every failed task with a traceback; for flexo's own errors (bad data, bad
    options) the CLI prints one line instead, so those records stay off the console."""

    def __init__(self) -> None:
        super().__init__()
        self.markers = tuple(f"{name}{sep}" for name in _subclass_names(FlexoError)
                             for sep in ("(", ":"))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FlexoError):
            return False
        message = record.getMessage()
        return not any(marker in message for marker in self.markers)


def quiet_console() -> None:
    hide = _HideExpectedFailures()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.addFilter(hide)
