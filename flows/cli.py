"""The `flexo` command line: parse, call one function, print a summary (see flows/cli_*.py)."""

from flows import cli_audit, cli_contribute, cli_data, cli_experts, cli_validate  # noqa: F401  (register commands)
from flows.cli_app import app

__all__ = ["app"]
