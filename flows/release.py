"""`release_flow`: the operator's step.

    select the newest approved module per contributor -> fetch them against their approved
    hashes -> resolve each module's published proxy ids in the anchor's public pool -> merge
    (routers tuned on that proxy text) -> evaluate (public and built-in held-out text, routing,
    plots) -> gate (public text) -> write release.json and the model card -> register a
    `flexo-release` version with alias `candidate` and emit `flexo.release.published` -> install
    it under FLEXO_HOME

`production` is not this flow's to move: each contributor measures the candidate on its own
held-out text (`accept_flow`) and `promote_flow` moves the alias once all have accepted. Nothing
is registered until the release has been built, evaluated and judged: a failure on the way leaves
the registry as it was, and no build directory behind.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from components.atomic import removed_on_failure
from components.expert_module import ModuleRef
from components.merge import MergeRecord
from flows import events, ledger, withdrawals
from flows.retries import retried
from flows.settings import flexo_home
from flows.tracking import registry, releases, runs
from governance.release import (
    DomainFigures,
    GateDecision,
    ReleasedExpert,
    ReleaseRecord,
    judge_release,
)
from governance.selection import Selection

EXPERIMENT = "flexo-release"


class ReleaseConfig(BaseModel):
    """How a release is built and judged."""

    top_k: int | None = Field(None, ge=1)  # experts active per token; None: all of them
    # 0: the untuned merge (no proxies needed). 100, not 30: at the base preset (hidden-init
    # experts, top-5) public +3.0% -> +2.2%, legal -0.2% -> -1.6% (docs/results/paper_claims.md).
    # 200 steps of 8 windows, not 100 of 16 (the same tokens, in more and smaller updates):
    # public +0.9% -> +0.6%, legal +0.1% -> -0.4%, and 25% less time (README, the claims)
    router_tuning_steps: int = Field(200, ge=0)
    router_tuning_batch: int = Field(8, gt=0)  # windows of 128 tokens per step
    router_tuning_lr: float = Field(1e-2, gt=0)  # router rows only: they move little at 1e-3
    # With its own expert masked, each contributor's proxy text keeps >= 95% on the public
    # expert: a withdrawal then gives the anchor back. At base, removing literature's expert left
    # literature +5.5% against the anchor without it (legal's expert took 12.9%), +1.7% with it.
    # None: no such term.
    router_opt_out_share: float | None = Field(0.95, gt=0, lt=1)
    # The floor on the public expert's windows too, each contributor expert masked in turn. Not
    # on: at base it left public +2.5% from the merge once code's expert was removed (+2.4%
    # without it); the code expert's help on the public mix's Python is what C5 sees.
    router_opt_out_public_rows: bool = False
    eval_max_tokens: int = Field(16_384, gt=0)  # held-out tokens per domain
    max_public_increase: float = Field(0.02, ge=0)  # gate: public perplexity may rise this much
    device: str | None = None

    def router_tuning(self):
        """The release's router tuning as `components.router_tuning` takes it."""
        from components.router_tuning import RouterTuningConfig

        return RouterTuningConfig(steps=self.router_tuning_steps, lr=self.router_tuning_lr,
                                  batch_size=self.router_tuning_batch,
                                  opt_out_public_share=self.router_opt_out_share,
                                  opt_out_public_rows=self.router_opt_out_public_rows)


class ReleaseResult(BaseModel):
    version: int
    directory: Path
    gate_passed: bool  # the operator's checks; `production` waits for the contributors too
    record: ReleaseRecord
    mlflow_run_id: str


@task(cache_policy=NO_CACHE)
def new_build() -> Path:
    """`$FLEXO_HOME/releases/build-<time>`: where the release is built before it has a version."""
    from components.clock import stamp

    return flexo_home() / "releases" / f"build-{stamp()}"


@task(**retried(3))
def select_modules() -> Selection:
    """The newest anchor and, per contributor, the newest approved version trained on it; the
    flow's run is tagged with the anchor and expert versions (`flexo lineage` walks these)."""
    from governance.selection import select_experts

    anchor = registry.anchor_version()
    selection = select_experts(anchor.version, anchor.tags.anchor_fingerprint,
                               {c: registry.expert_versions(c) for c in registry.contributors()},
                               withdrawals.denied())
    runs.set_tags({"flexo.anchor_version": str(selection.anchor_version)}
                  | {f"flexo.expert.{e.contributor}.version": str(e.version)
                     for e in selection.experts}
                  | {f"flexo.expert.{e.contributor}.run_id": e.contribute_run_id
                     for e in selection.experts})
    log = get_run_logger()
    for e in selection.experts:
        log.info("including %s version %d (reviewed by %s)", e.registered_model, e.version,
                 e.reviewed_by)
    for who, why in selection.excluded.items():
        log.info("leaving out %s: %s", who, why)
    for who in selection.withdrawn:
        log.info("leaving out %s: withdrawn", who)
    return selection


@task(**retried(3))
def fetch(selection: Selection) -> tuple[Path, list[ModuleRef]]:
    """Local copies of the anchor and the approved modules; a module whose weights differ from
    what the reviewer approved is refused."""
    from components.errors import CheckpointError
    from components.expert_module import file_sha256
    from governance.manifest import ExpertManifest

    anchor = registry.download(registry.anchor_version(number=selection.anchor_version),
                               "anchor", "anchors")
    refs = []
    for e in selection.experts:
        directory = registry.download(registry.expert_version(e.contributor, e.version),
                                      "module", "modules")
        actual = file_sha256(directory / ExpertManifest.read(directory).weights_file)
        if actual != e.weights_sha256:
            raise CheckpointError(f"{e.registered_model} version {e.version}: weights "
                                  f"{actual[:12]} differ from the approved {e.weights_sha256[:12]}; "
                                  f"the module must be re-published and reviewed")
        refs.append(ModuleRef(name=e.contributor, directory=directory,
                              weights_sha256=e.weights_sha256))
    return anchor, refs


@task(cache_policy=NO_CACHE)
def resolve_proxies(anchor: Path, modules: list[ModuleRef]) -> dict[str, list[str]]:
    """Each module's published proxy ids as public text from the anchor's pool (the public
    expert: the rest of the pool); a module without proxies, or with ids the pool does not
    hold, is refused before anything is merged."""
    from flows.modules import published_proxies

    proxies = published_proxies(anchor, {m.name: m.directory for m in modules})
    for name, texts in proxies.items():
        get_run_logger().info("router-tuning proxy for %s: %d public documents", name,
                              len(texts))
    return proxies


@task(cache_policy=NO_CACHE)
def merge_release(anchor: Path, modules: list[ModuleRef], out: Path,
                  proxies: dict[str, list[str]] | None, cfg: ReleaseConfig) -> MergeRecord:
    """Merge with every expert on (top-k all by default), routers tuned on each expert's public
    proxy text (untuned when `proxies` is None)."""
    from components.merge import merge
    from components.router_tuning import proxy_router_tuner

    top_k = cfg.top_k or len(modules) + 1
    with runs.child_run("merge"):
        runs.log_params({"top_k": top_k, "router_tuning_steps": cfg.router_tuning_steps,
                         "router_tuning_batch": cfg.router_tuning_batch,
                         "router_tuning_lr": cfg.router_tuning_lr,
                         "router_opt_out_share": cfg.router_opt_out_share,
                         "router_opt_out_public_rows": cfg.router_opt_out_public_rows,
                         "experts": ",".join(m.name for m in modules)})
        tune = proxy_router_tuner(anchor, proxies, cfg.router_tuning()) if proxies else None
        record = merge(anchor, modules, out, top_k=top_k, tune=tune)
        runs.log_dict(record.model_dump(), "merge_record.json")
        if record.router_tuning:
            runs.log_metrics({f"router_tuning.{k}": v for k, v in record.router_tuning.items()})
    return record


@task(cache_policy=NO_CACHE)
def evaluate_release(release: Path, anchor: Path, cfg: ReleaseConfig,
                     ) -> tuple[dict[str, DomainFigures], str]:
    """Anchor and release on every built-in domain's held-out split: perplexity, routing shares,
    a table and two PNGs in the evaluation's child run. Returns the figures and the run id."""
    from components import plots
    from components.builtin_corpora import PRIVATE_DOMAINS, PUBLIC, load_domain
    from components.evaluation import evaluate_model
    from governance.release import figures_table

    corpora = [load_domain(name).split("test") for name in (PUBLIC, *PRIVATE_DOMAINS)]
    with runs.child_run("evaluate") as run_id:  # the run's duration is the evaluation's
        before = evaluate_model(anchor, corpora, cfg.eval_max_tokens, device=cfg.device)
        after = evaluate_model(release, corpora, cfg.eval_max_tokens, device=cfg.device,
                               deny_list=withdrawals.deny_list_path())
        figures = {a.domain.split(":")[0]: DomainFigures(
            anchor=a.perplexity, release=r.perplexity, tokens=r.tokens, routing=r.routing)
            for a, r in zip(before, after, strict=True)}
        metrics = {}
        for domain, f in figures.items():
            metrics |= {f"perplexity.{domain}.anchor": f.anchor,
                        f"perplexity.{domain}.release": f.release, f"change.{domain}": f.change}
            metrics |= {f"routing.{domain}.{expert}": share
                        for expert, share in f.routing.items()}
        series = {"anchor": {d: f.anchor for d, f in figures.items()},
                  "release": {d: f.release for d, f in figures.items()}}
        runs.log_figures(
            metrics, figures_table(figures, routing=True),
            {"perplexity.png": lambda path: plots.perplexity_bars(
                path, series, "Held-out perplexity per domain"),
             "routing.png": lambda path: plots.routing_heatmap(
                path, {d: f.routing for d, f in figures.items()},
                "Share of router mass per expert")},
            {d: f.model_dump() for d, f in figures.items()})
    return figures, run_id


@task(cache_policy=NO_CACHE)
def gate(figures: dict[str, DomainFigures], experts: list[ReleasedExpert],
         cfg: ReleaseConfig) -> GateDecision:
    decision = judge_release(figures, experts, cfg.max_public_increase)
    for check in decision.checks:
        get_run_logger().info("gate %s %s: %s", "PASS" if check.passed else "FAIL", check.name,
                              check.detail)
    return decision


@task(cache_policy=NO_CACHE)
def write_release_files(build: Path, selection: Selection, merged: MergeRecord,
                        figures: dict[str, DomainFigures], decision: GateDecision,
                        ) -> ReleaseRecord:
    """`release.json` (what went in, how it measured, the decision) and the model card."""
    from components.atomic import atomic_write
    from components.clock import timestamp
    from components.fingerprint import fingerprint_checkpoint
    from flows.versioning import code_version
    from governance.release import model_card

    record = ReleaseRecord(
        anchor_version=selection.anchor_version, anchor_fingerprint=selection.anchor_fingerprint,
        experts=selection.experts, excluded=selection.excluded, top_k=merged.top_k,
        plan_digest=merged.plan_digest, checkpoint_sha256=fingerprint_checkpoint(build),
        router_tuning=merged.router_tuning, figures=figures,
        gate=decision, code_version=code_version(), created_at=timestamp())
    atomic_write(build / "release.json", record.model_dump_json(indent=2) + "\n")
    atomic_write(build / "README.md", model_card(record))
    return record


@task(**retried(2))
def register_release(directory: Path, record: ReleaseRecord, evaluation_run_id: str,
                     actor: str = "operator") -> int:
    """The release as a pyfunc model version (its artifacts: the HF checkpoint), alias
    `candidate`, announced to the contributors who must accept it. A module withdrawn while the
    release was being built is refused here, before anything is registered."""
    from governance.tags import ReleaseTags

    late = sorted(withdrawals.denied().intersection(e.contributor for e in record.experts))
    if late:
        raise ledger.refuse(actor, registry.RELEASE_MODEL, "register",
                            f"{', '.join(late)} withdrew while this release was being built; "
                            f"nothing was registered: release again (`flexo release`)")
    tags = ReleaseTags(
        anchor_version=record.anchor_version, anchor_fingerprint=record.anchor_fingerprint,
        experts={e.contributor: e.version for e in record.experts},
        excluded=list(record.excluded), gate="passed" if record.gate.passed else "failed",
        plan_digest=record.plan_digest, checkpoint_sha256=record.checkpoint_sha256,
        release_run_id=runs.active_run_id(),
        evaluation_run_id=evaluation_run_id, code_version=record.code_version)
    version = releases.register_release(directory, tags, record.model_dump(mode="json"))
    events.emit(events.RELEASE_PUBLISHED, f"flexo.release.{version}",
                {"version": version, "gate": tags.gate,
                 "experts": {e.contributor: e.version for e in record.experts}})
    checkpoint = ledger.record(
        "release", actor, f"{registry.RELEASE_MODEL} v{version}", gate=tags.gate,
        experts=",".join(f"{e.contributor}:{e.version}" for e in record.experts),
        excluded=",".join(record.excluded), checkpoint_sha256=record.checkpoint_sha256)
    runs.log_dict(checkpoint.model_dump(), "ledger_checkpoint.json")  # a witness outside it
    get_run_logger().info("registered flexo-release version %d as candidate (gate %s)", version,
                          tags.gate)
    return version


@task(cache_policy=NO_CACHE)
def install(build: Path, version: int) -> Path:
    """Move the build to `$FLEXO_HOME/releases/v<N>` (where promotion links `production`)."""
    target = build.with_name(f"v{version}")
    build.rename(target)
    return target


@flow(name="release")
def release_flow(config: ReleaseConfig | None = None, actor: str = "operator") -> ReleaseResult:
    """Build, evaluate, gate and register a release from the registry's approved modules;
    `actor`: the operator on whose behalf (the ledger's actor)."""
    cfg = config or ReleaseConfig()
    with runs.flow_run(EXPERIMENT, "release", {"flexo.kind": "release"},
                       cfg.model_dump()) as run_id, removed_on_failure(new_build()) as build:
        selection = select_modules()
        anchor, modules = fetch(selection)
        proxies = resolve_proxies(anchor, modules) if cfg.router_tuning_steps else None
        merged = merge_release(anchor, modules, build, proxies, cfg)
        figures, evaluation_run = evaluate_release(build, anchor, cfg)
        decision = gate(figures, selection.experts, cfg)
        record = write_release_files(build, selection, merged, figures, decision)
        version = register_release(build, record, evaluation_run, actor)
        directory = install(build, version)
    return ReleaseResult(version=version, directory=directory, gate_passed=decision.passed,
                         record=record, mlflow_run_id=run_id)
