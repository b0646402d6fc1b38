"""The `flexo` command line: parse, call one function, print a summary (see flows/cli_*.py)."""

from flows import (  # noqa: F401  (register commands)
    cli_audit,
    cli_contribute,
    cli_data,
    cli_demo,
    cli_deploy,
    cli_experts,
    cli_release,
    cli_validate,
)
from flows.cli_app import app

__all__ = ["app"]
