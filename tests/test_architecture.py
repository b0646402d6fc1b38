"""The layout DESIGN §2 promises, checked on the source: import arrows point one way
(flows -> components, flows -> governance), one adapter package talks to MLflow, and the CLI
lives in flows/cli/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> top-level modules it must never import
FORBIDDEN = {
    "components": {"flows", "governance", "prefect", "mlflow"},
    "governance": {"flows", "components", "torch", "transformers", "prefect", "mlflow"},
}
ADAPTER = ROOT / "flows" / "tracking"


def _imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    wrong = {f"{p.relative_to(ROOT)} imports {name}"
             for p in _sources(package) for name in _imports(p) & FORBIDDEN[package]}
    assert not wrong, sorted(wrong)


def test_only_the_tracking_adapter_imports_mlflow():
    users = {p.relative_to(ROOT) for package in ("components", "governance", "flows")
             for p in _sources(package) if "mlflow" in _imports(p)}
    assert users and all(ADAPTER in (ROOT / p).parents for p in users), sorted(map(str, users))


def test_the_cli_is_one_package_with_one_module_per_command_group():
    assert not list((ROOT / "flows").glob("cli_*.py"))
    from flows.cli import app

    modules = {p.stem for p in (ROOT / "flows" / "cli").glob("*.py")}
    groups = {g.name for g in app.registered_groups}
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert groups | commands <= modules, sorted((groups | commands) - modules)
