"""MLflow wiring (DESIGN §3): an SQLite store and artifacts under FLEXO_HOME unless
`MLFLOW_TRACKING_URI` points at a real server; experiments per flow kind; registry versions.

Only counts, digests, configs and weights are logged here, never contributor text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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
def child_run(name: str) -> Iterator[mlflow.ActiveRun]:
    """A run nested under the flow's parent run: one per task."""
    with mlflow.start_run(run_name=name, nested=True) as run:
        yield run


def log_flat_params(params: dict[str, Any], prefix: str = "") -> None:
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


def log_curve(key: str, values: list[float]) -> None:
    """A per-step metric in one batched write, not one database round trip per step."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    MlflowClient().log_batch(mlflow.active_run().info.run_id,
                             metrics=[Metric(key, v, now, step) for step, v in enumerate(values)])


def log_fingerprint_input(name: str, digest: str, context: str, **tags: str) -> None:
    """Record a dataset the run used by its fingerprint (digest and counts), never its text."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    dataset = MetaDataset(source=CodeDatasetSource(tags={"fingerprint": digest}), name=name,
                          digest=digest[:36])
    mlflow.log_input(dataset, context=context, tags={"fingerprint": digest, **tags})


def register_version(name: str, artifact_path: str, tags: dict[str, str],
                     description: str = "") -> int:
    """A new version of registered model `name` whose source is the active run's `artifact_path`.

    The version is created in one call with all its tags, so readers never see it half-tagged.
    """
    client = MlflowClient()
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("register_version needs an active MLflow run")
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source=f"runs:/{run.info.run_id}/{artifact_path}",
                                          run_id=run.info.run_id, tags=tags,
                                          description=description)
    return int(version.version)



def tag_lineage(anchor_version: int, experts: list) -> None:
    """Tags on the active run linking it to the anchor version and each expert version with the
    contributor run that produced it: `flexo lineage` walks these."""
    tags = {"flexo.anchor_version": str(anchor_version)}
    for e in experts:
        tags[f"flexo.expert.{e.contributor}.version"] = str(e.version)
        tags[f"flexo.expert.{e.contributor}.run_id"] = e.contribute_run_id
    mlflow.set_tags(tags)


def log_release_figures(figures: dict) -> None:
    """Per-domain perplexity and routing as metrics, a Markdown/JSON table and two PNGs."""
    import tempfile
    from pathlib import Path

    from components import plots

    metrics = {}
    for domain, f in figures.items():
        metrics |= {f"perplexity.{domain}.anchor": f.anchor,
                    f"perplexity.{domain}.release": f.release, f"change.{domain}": f.change}
        metrics |= {f"routing.{domain}.{expert}": share for expert, share in f.routing.items()}
    mlflow.log_metrics(metrics)
    mlflow.log_dict({d: f.model_dump() for d, f in figures.items()}, "evaluation.json")
    rows = ["| domain | anchor | release | change | routing |", "|---|---|---|---|---|"]
    for domain, f in figures.items():
        routing = ", ".join(f"{e} {s:.0%}" for e, s in f.routing.items())
        rows.append(f"| {domain} | {f.anchor:.2f} | {f.release:.2f} | {f.change:+.1%} | "
                    f"{routing} |")
    mlflow.log_text("\n".join(rows) + "\n", "evaluation.md")
    with tempfile.TemporaryDirectory() as tmp:
        plots.perplexity_bars(Path(tmp) / "perplexity.png",
                              {"anchor": {d: f.anchor for d, f in figures.items()},
                               "release": {d: f.release for d, f in figures.items()}},
                              "Held-out perplexity per domain")
        plots.routing_heatmap(Path(tmp) / "routing.png",
                              {d: f.routing for d, f in figures.items()},
                              "Share of router mass per expert")
        mlflow.log_artifacts(tmp, artifact_path="plots")
