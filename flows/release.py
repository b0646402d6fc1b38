"""`release_flow`: the operator's step. Gather the latest approved, not withdrawn module of each
contributor -> merge -> evaluate (per-domain perplexity, routing, plots) -> gate -> register a
`flexo-release` version with alias `candidate`, promote it to `production` when the gate passes
-> emit `flexo.release.published`.

Nothing is registered until the release has been built, evaluated and judged: a failure on the
way leaves the registry and the `production` alias as they were.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from pydantic import BaseModel, Field

from components.expert_module import ModuleRef
from components.merge import MergeRecord
from flows import release_registry, tracking
from flows.modules import public_router_tuner
from flows.release_registry import Selection
from flows.settings import flexo_home
from governance.release import (
    DomainFigures,
    GateDecision,
    ReleasedExpert,
    ReleaseRecord,
    judge_release,
    model_card,
)

EXPERIMENT = "flexo-release"
PUBLISHED_EVENT = "flexo.release.published"


class ReleaseConfig(BaseModel):
    """How a release is built and judged."""

    top_k: int | None = Field(None, ge=1)  # experts active per token; None: all of them
    router_tuning_steps: int = Field(30, ge=0)  # 0 skips router tuning on public proxy text
    router_tuning_lr: float = Field(1e-2, gt=0)  # router rows only: they move little at 1e-3
    eval_max_tokens: int = Field(16_384, gt=0)  # held-out tokens per domain
    max_public_increase: float = Field(0.10, ge=0)  # gate: public perplexity may rise this much
    device: str | None = None


class ReleaseResult(BaseModel):
    version: int
    directory: Path
    promoted: bool
    record: ReleaseRecord
    mlflow_run_id: str


@task(retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def select_modules() -> Selection:
    """The newest anchor and, per contributor, the newest approved version trained on it."""
    selection = release_registry.select()
    log = get_run_logger()
    for e in selection.experts:
        log.info("including %s version %d (reviewed by %s)", e.registered_model, e.version,
                 e.reviewed_by)
    for who, why in selection.excluded.items():
        log.info("leaving out %s: %s", who, why)
    return selection


@task(retries=3, retry_delay_seconds=[2, 5, 15], cache_policy=NO_CACHE)
def fetch(selection: Selection) -> tuple[Path, list[ModuleRef]]:
    """Local copies of the anchor and the approved modules, each checked against its hash."""
    return release_registry.fetch(selection.anchor_version, selection.experts)


@task(cache_policy=NO_CACHE)
def merge_release(anchor: Path, modules: list[ModuleRef], out: Path,
                  domains: dict[str, str | None], cfg: ReleaseConfig) -> MergeRecord:
    """Merge with every expert on (top-k all by default), routers tuned on public proxy text:
    the public mix's slice of each contributor's declared domain when all declared one."""
    from components.merge import merge

    top_k = cfg.top_k or len(modules) + 1
    with tracking.child_run("merge"):
        mlflow.log_params({"top_k": top_k, "router_tuning_steps": cfg.router_tuning_steps,
                           "router_tuning_lr": cfg.router_tuning_lr,
                           "experts": ",".join(m.name for m in modules)})
        tune = public_router_tuner(anchor, cfg.router_tuning_steps, cfg.router_tuning_lr,
                                   domains)
        record = merge(anchor, modules, out, top_k=top_k, tune=tune)
        mlflow.log_dict(record.model_dump(), "merge_record.json")
        if record.router_tuning:
            mlflow.log_metrics({f"router_tuning.{k}": v for k, v in record.router_tuning.items()})
    return record


@task(cache_policy=NO_CACHE)
def evaluate_release(release: Path, anchor: Path, cfg: ReleaseConfig,
                     ) -> tuple[dict[str, DomainFigures], str]:
    """Anchor and release on every built-in domain's held-out split: perplexity, routing shares,
    a table and two PNGs in the evaluation's child run. Returns the figures and the run id."""
    from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC, load_domain
    from components.evaluation import evaluate_model

    corpora = [load_domain(name).split("test") for name in (PUBLIC, *PRIVATE_DOMAINS)]
    before = evaluate_model(anchor, corpora, cfg.eval_max_tokens, device=cfg.device)
    after = evaluate_model(release, corpora, cfg.eval_max_tokens, device=cfg.device)
    figures = {a.domain.split(":")[0]: DomainFigures(anchor=a.perplexity, release=r.perplexity,
                                                     tokens=r.tokens, routing=r.routing)
               for a, r in zip(before, after, strict=True)}
    with tracking.child_run("evaluate") as run:
        tracking.log_release_figures(figures)
    return figures, run.info.run_id


@task(cache_policy=NO_CACHE)
def gate(figures: dict[str, DomainFigures], experts: list[ReleasedExpert],
         cfg: ReleaseConfig) -> GateDecision:
    decision = judge_release(figures, experts, cfg.max_public_increase)
    for check in decision.checks:
        get_run_logger().info("gate %s %s: %s", "PASS" if check.passed else "FAIL", check.name,
                              check.detail)
    return decision


@task(retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def register_release(directory: Path, record: ReleaseRecord, evaluation_run_id: str) -> int:
    """The release as a pyfunc model version (its artifacts: the HF checkpoint), alias
    `candidate`; `production` too when the gate passed."""
    version = release_registry.register(directory, record, evaluation_run_id)
    emit_event(event=PUBLISHED_EVENT,
               resource={"prefect.resource.id": f"flexo.release.{version}"},
               payload={"version": version, "production": record.gate.passed,
                        "experts": {e.contributor: e.version for e in record.experts}})
    get_run_logger().info("registered flexo-release version %d (%s)", version,
                          "production" if record.gate.passed else "candidate only")
    return version


@flow(name="release")
def release_flow(config: ReleaseConfig | None = None) -> ReleaseResult:
    """Build, evaluate, gate and register a release from the registry's approved modules."""
    from flows.versioning import code_version

    cfg = config or ReleaseConfig()
    tracking.configure()
    tracking.use_experiment(EXPERIMENT)
    build = flexo_home() / "releases" / f"build-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}"
    with mlflow.start_run(run_name="release") as run:
        mlflow.set_tags({"flexo.kind": "release"})
        tracking.log_flat_params(cfg.model_dump())
        try:
            selection = select_modules()
            tracking.tag_lineage(selection.anchor_version, selection.experts)
            anchor, modules = fetch(selection)
            merged = merge_release(anchor, modules, build,
                                   {e.contributor: e.domain for e in selection.experts}, cfg)
            figures, evaluation_run = evaluate_release(build, anchor, cfg)
            decision = gate(figures, selection.experts, cfg)
            record = ReleaseRecord(
                anchor_version=selection.anchor_version,
                anchor_fingerprint=selection.anchor_fingerprint, experts=selection.experts,
                excluded=selection.excluded, top_k=merged.top_k, plan_digest=merged.plan_digest,
                router_tuning=merged.router_tuning, figures=figures, gate=decision,
                code_version=code_version())
            (build / "release.json").write_text(record.model_dump_json(indent=2) + "\n")
            (build / "README.md").write_text(model_card(record))
            version = register_release(build, record, evaluation_run)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)  # nothing half-built stays behind
            raise
        directory = release_registry.install(build, version, promoted=decision.passed)
    return ReleaseResult(version=version, directory=directory, promoted=decision.passed,
                         record=record, mlflow_run_id=run.info.run_id)
