"""MLflow runs (DESIGN §3): an SQLite store and artifacts under FLEXO_HOME unless
`MLFLOW_TRACKING_URI` points at a real server; one experiment per flow kind; a parent run per flow
and a child run per task; what a run logs.

Only counts, digests, configs and weights are logged here, never contributor text.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flows.settings import flexo_home


def configure() -> str:
    """Point MLflow at the configured server, or at FLEXO_HOME's SQLite store; returns the URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        home = flexo_home()
        home.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{home / 'mlflow.db'}"
    # A server makes MLflow print "View run ... at <url>" on stdout for every run: chatter for
    # the console, which shows the figures that matter (the log file has the run ids)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    mlflow.set_tracking_uri(uri)  # the registry follows the tracking URI
    return uri


def use_experiment(name: str) -> str:
    """Create the experiment on first use (artifacts under FLEXO_HOME when local); make it current."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if mlflow.get_tracking_uri().startswith("sqlite:"):
            location = (flexo_home() / "mlartifacts" / name).as_uri()
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by a concurrent flow
            pass
    return mlflow.set_experiment(name).experiment_id


@contextmanager
def flow_run(experiment: str, name: str, tags: dict[str, str],
             params: dict[str, Any] | None = None) -> Iterator[str]:
    """The flow's parent run in `experiment`, tagged and with its config as params; yields its id."""
    configure()
    use_experiment(experiment)
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags(tags)
        if params:
            log_params(params)
        yield run.info.run_id


@contextmanager
def child_run(name: str) -> Iterator[str]:
    """A run nested under the flow's parent run: one per task; yields its id."""
    with mlflow.start_run(run_name=name, nested=True) as run:
        yield run.info.run_id


def active_run_id() -> str:
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run: call this inside `flow_run`")
    return run.info.run_id


def log_params(params: dict[str, Any], prefix: str = "") -> None:
    """Log a nested config as dotted params (MLflow params are flat strings)."""
    flat: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else k)
        else:
            flat[key] = value

    walk(params, prefix)
    mlflow.log_params(flat)


def log_metrics(metrics: dict[str, float]) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def log_dict(data: dict[str, Any], artifact_file: str) -> None:
    mlflow.log_dict(data, artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    mlflow.log_text(text, artifact_file)


def log_artifacts(directory: Path, artifact_path: str) -> None:
    mlflow.log_artifacts(str(directory), artifact_path=artifact_path)


def log_curve(key: str, values: list[float]) -> None:
    """A per-step metric in one batched write, not one database round trip per step."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    MlflowClient().log_batch(active_run_id(),
                             metrics=[Metric(key, v, now, step) for step, v in enumerate(values)])


def log_fingerprint_input(name: str, digest: str, context: str, **tags: str) -> None:
    """Record a dataset the run used by its fingerprint (digest and counts), never its text."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    dataset = MetaDataset(source=CodeDatasetSource(tags={"fingerprint": digest}), name=name,
                          digest=digest[:36])
    mlflow.log_input(dataset, context=context, tags={"fingerprint": digest, **tags})


def log_figures(metrics: dict[str, float], table: str, plots: dict[str, Any],
                data: dict[str, Any]) -> None:
    """An evaluation: metrics, `evaluation.json` + `evaluation.md`, and PNGs under `plots/`.

    `plots` maps a file name to a function writing that PNG at the path it is given."""
    log_metrics(metrics)
    mlflow.log_dict(data, "evaluation.json")
    mlflow.log_text(table, "evaluation.md")
    with tempfile.TemporaryDirectory() as tmp:
        for filename, draw in plots.items():
            draw(Path(tmp) / filename)
        mlflow.log_artifacts(tmp, artifact_path="plots")


def child_run_id(parent_run_id: str, name: str) -> str | None:
    """The id of `parent_run_id`'s child run called `name`, if it has one."""
    parent = MlflowClient().get_run(parent_run_id)
    runs = mlflow.search_runs(experiment_ids=[parent.info.experiment_id], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                                            f"tags.mlflow.runName = '{name}'")
    return runs[0].info.run_id if runs else None
