"""Who acts (issue 17): embedded, `--as` as given; with an MLflow server, the user of the MLflow
credentials, and an `--as` that disagrees with it refused before anything runs."""

from __future__ import annotations

import pytest

SERVER = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLFLOW_TRACKING_USERNAME": "rev-one"}


@pytest.fixture
def run(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("FLEXO_HOME", str(tmp_path / "home"))

    def invoke(*args: str, env: dict[str, str] | None = None):
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        return CliRunner().invoke(app, list(args))

    return invoke


def test_embedded_the_name_given_acts_and_none_given_is_refused(run, tmp_path):
    assert run("review", "declare", "--as", "rita").exit_code == 0
    assert "rita" in (tmp_path / "home" / "reviewers.json").read_text()
    missing = run("review", "declare")
    assert missing.exit_code == 2 and "pass --as NAME" in missing.output


def test_with_a_server_the_mlflow_user_acts_and_a_disagreeing_as_is_refused(run, tmp_path):
    refused = run("review", "declare", "--as", "rev-two", env=SERVER)
    assert refused.exit_code == 2
    assert "'rev-two' disagrees with your MLflow identity 'rev-one'" in refused.output
    assert not (tmp_path / "home" / "reviewers.json").exists()  # nothing ran
    assert run("review", "declare", env=SERVER).exit_code == 0  # no --as: the MLflow user
    assert '"rev-one"' in (tmp_path / "home" / "reviewers.json").read_text()
    assert run("review", "declare", "--as", "rev-one", env=SERVER).exit_code == 0
    # a file tracking URI is not a server: --as is taken as given
    local = run("review", "declare", "--as", "rita",
                env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db",
                     "MLFLOW_TRACKING_USERNAME": "rev-one"})
    assert local.exit_code == 0
