"""`contribute_flow`: a data owner's step, run on their own machine (DESIGN §4).

    validate -> PII screen -> select public proxies -> train the expert (cached on disk by what
    it is a function of) -> assemble anchor + module -> local evaluation -> extraction audit ->
    finish the manifest -> publish the module as a `pending` version of `flexo-expert-<id>`

Raw text lives only inside these tasks' memory: what reaches MLflow, Prefect and the registry is
the module, its manifest, counts, digests and perplexities (no task result is persisted). A failed
check stops the flow before training, so nothing is trained and no version is created.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from components.atomic import atomic_output_dir
from components.documents import Corpus
from components.errors import DataError
from components.evaluation import LocalEvaluation
from components.expert_training import ExpertConfig
from components.extraction_audit import AuditConfig, AuditResult
from components.pii import PiiPolicy, PiiReport
from components.proxy_selection import ProxyConfig
from components.validation import ValidationConfig, ValidationReport
from flows import events, ledger
from flows.retries import retried
from flows.settings import flexo_home
from flows.tracking import registry, runs
from governance.contributors import validate_contributor_id
from governance.manifest import ExpertManifest, ProxySelection
from governance.tags import ExpertTags

EXPERIMENT = "flexo-contribute"


class ContributeConfig(BaseModel):
    """Everything a contribution run is configured by (the contribution config)."""

    expert: ExpertConfig = ExpertConfig()
    validation: ValidationConfig = ValidationConfig()
    pii: PiiPolicy = "redact"
    audit: AuditConfig | None = AuditConfig()  # None skips the extraction audit
    proxies: ProxyConfig | None = ProxyConfig()  # None skips proxy selection
    device: str | None = None
    eval_max_tokens: int = Field(65_536, gt=0)  # held-out tokens per corpus, local evaluation
    # The module's licence (SPDX id) as the contributor grants it; reviewers refuse one the
    # policy's licence table does not know (governance/policy.py LICENCES).
    licence: str = Field("proprietary", min_length=1)


class ContributionResult(BaseModel):
    contributor: str
    registered_model: str
    version: int
    module_dir: Path
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    mlflow_run_id: str
    validation: ValidationReport
    pii: PiiReport
    local: LocalEvaluation
    audit: AuditResult | None
    proxies: ProxySelection | None


@task(cache_policy=NO_CACHE)
def check_contributor(contributor: str) -> None:
    """When the policy lists contributors, only they publish modules."""
    from flows.policy import enforce
    from governance.access import require_contributor

    enforce(contributor, contributor, "contribute",
            lambda policy: require_contributor(policy, contributor))


@task(cache_policy=NO_CACHE)
def resolve_anchor(anchor: Path | None) -> tuple[Path, str]:
    """The anchor to train against (default: the newest registered one, downloaded) and its
    fingerprint, checked against its weights before any text is read."""
    from components.anchor import read_fingerprint
    from flows.anchor import registered_anchor

    anchor = anchor or registered_anchor()
    return anchor, read_fingerprint(anchor)


@task(cache_policy=NO_CACHE)
def contribution_target(contributor: str, out: Path | None) -> Path:
    """Where the module goes (default `$FLEXO_HOME/contributions/<id>/<time>`), checked empty."""
    from components.atomic import check_output_dir
    from components.clock import stamp

    return check_output_dir(out or flexo_home() / "contributions" / contributor / stamp())


@task(cache_policy=NO_CACHE)
def validate_data(data: Path, cfg: ValidationConfig) -> ValidationReport:
    """Great Expectations suite over the directory; a failure stops the flow with its reason."""
    from components.validation import validate_directory

    with runs.child_run("validate"):
        report, gx_result = validate_directory(data, cfg)
        runs.log_metrics({f"data.{k}": v for k, v in report.statistics.items()})
        runs.log_dict(report.model_dump(), "validation.json")
        runs.log_dict(gx_result, "gx_result.json")
        runs.set_tags({"data_checks": "passed" if report.success else "failed"})
    if not report.success:
        raise DataError(f"data checks failed: {', '.join(report.failed)}; fix the data in {data} "
                        f"(`flexo validate --data {data}` shows the statistics)")
    get_run_logger().info("data checks passed: %d documents", report.statistics["documents"])
    return report


@task(cache_policy=NO_CACHE)
def screen_pii(data: Path, policy: PiiPolicy) -> tuple[Corpus, PiiReport]:
    """Load the corpus and apply the PII policy: the corpus returned is what training sees."""
    from components.pii import screen_corpus
    from components.user_data import load_directory

    corpus, report = screen_corpus(load_directory(data), policy)
    with runs.child_run("pii"):
        runs.log_params({"policy": policy})
        runs.log_metrics({f"pii.{kind}": n for kind, n in report.counts.items()}
                         | {"pii.documents_with_pii": report.documents_with_pii})
    if policy == "fail" and report.found:
        raise DataError(f"PII found ({report.found} values in {report.documents_with_pii} "
                        f"documents) and the policy is 'fail'; remove it or use --pii redact")
    found = ", ".join(f"{k} {v}" for k, v in report.counts.items() if v) or "none"
    get_run_logger().info("PII (%s): %s", policy, found)
    return corpus, report


@task(cache_policy=NO_CACHE)
def select_proxies(anchor: Path, corpus: Corpus, cfg: ProxyConfig) -> ProxySelection:
    """Public documents resembling the data, chosen here: a classifier of the contributor's
    training documents against the anchor's public pool. Only the chosen public documents' ids
    and numbers come out (the manifest publishes them; release router tuning reads them)."""
    from flows.modules import choose_proxies

    choice = choose_proxies(anchor, corpus, cfg)
    with runs.child_run("proxies"):
        runs.log_params(cfg.model_dump())
        runs.log_metrics({"proxy.auc": choice.auc, "proxy.documents": len(choice.ids),
                          "proxy.tokens": choice.tokens, "proxy.threshold": choice.threshold})
    get_run_logger().info("proxies: %d public documents (%d tokens), held-out AUC %.3f",
                          len(choice.ids), choice.tokens, choice.auc)
    return choice


def training_key(anchor_fingerprint: str, contributor: str, data_digest: str,
                 cfg: ExpertConfig) -> str:
    """What a trained module is a function of: the anchor, the (screened) data, the config and
    the code. Equal keys mean an equal module."""
    import hashlib
    import json

    from flows.versioning import code_version

    blob = json.dumps({"anchor": anchor_fingerprint, "contributor": contributor,
                       "data": data_digest, "config": cfg.model_dump(mode="json"),
                       "code": code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def module_cache(contributor: str, key: str) -> Path:
    return flexo_home() / "modules" / contributor / key[:24]


@task(cache_policy=NO_CACHE)
def train(anchor: Path, anchor_fingerprint: str, contributor: str, corpus: Corpus,
          cfg: ExpertConfig, device: str | None) -> tuple[ExpertManifest, Path]:
    """The module for this anchor, data, config and code, from the on-disk cache
    (`$FLEXO_HOME/modules/<id>/<key>`) when a whole, unaltered copy is there; trained into it
    otherwise. Returns its manifest and directory."""
    from flows.modules import intact_module, train_module
    from flows.ranks import order_training

    fingerprint = corpus.fingerprint()
    key = training_key(anchor_fingerprint, contributor, fingerprint.digest, cfg)
    out = module_cache(contributor, key)
    if (manifest := intact_module(out)) is not None:
        get_run_logger().info("module cached in %s (weights %s): nothing to train", out,
                              manifest.weights_sha256[:12])
        return manifest, out
    shutil.rmtree(out, ignore_errors=True)  # partial or altered: never a module to trust
    with runs.child_run("train"):
        runs.log_params(cfg.model_dump())
        runs.log_fingerprint_input(f"{contributor}-corpus", fingerprint.digest, "training",
                                   documents=str(fingerprint.documents))
        order_training(anchor, out, fingerprint.digest, cfg)  # under torchrun: every rank trains
        manifest, result = train_module(anchor, contributor, corpus, cfg, out, device=device)
        runs.log_curve("loss", result.losses)
        runs.log_metrics(result.metrics)
        if result.privacy:
            runs.log_metrics({f"dp.{k}": float(v) for k, v in result.privacy.model_dump().items()})
    return manifest, out


@task(cache_policy=NO_CACHE)
def stage_module(cached: Path, module: Path) -> Path:
    """A copy of the cached module in the contribution's output, where its manifest is finished."""
    shutil.copytree(cached, module)
    return module


@task(cache_policy=NO_CACHE)
def assemble(anchor: Path, module: Path, contributor: str, out: Path) -> Path:
    """Anchor + module as one 2-expert checkpoint: what evaluation and the audit probe."""
    from components.expert_module import ModuleRef
    from components.merge import merge

    manifest = ExpertManifest.read(module)
    merge(anchor, [ModuleRef(name=contributor, directory=module,
                             weights_sha256=manifest.weights_sha256)], out)
    return out


@task(cache_policy=NO_CACHE)
def evaluate_locally(model: Path, anchor: Path, corpus: Corpus, device: str | None,
                     max_tokens: int) -> LocalEvaluation:
    from components.builtin_corpora import PUBLIC, load_domain
    from components.evaluation import evaluate_against_anchor

    with runs.child_run("evaluate"):
        local = evaluate_against_anchor(model, anchor, corpus, load_domain(PUBLIC), device=device,
                                        max_tokens=max_tokens)
        runs.log_metrics(local.metrics())
    get_run_logger().info("own-domain perplexity %.1f -> %.1f (%+.1f%%), public %+.1f%%",
                          local.domain_perplexity_anchor, local.domain_perplexity,
                          100 * local.domain_change, 100 * local.public_change)
    return local


@task(cache_policy=NO_CACHE)
def audit_privacy(model: Path, corpus: Corpus, cfg: AuditConfig) -> AuditResult:
    """Extraction audit on training documents (paper §5.3) of the dense 2-expert model."""
    from components.checkpoints import load_tokenizer
    from components.extraction_audit import extraction_audit
    from components.runtime import load_flexo_model

    with runs.child_run("audit"):
        result = extraction_audit(load_flexo_model(model), load_tokenizer(model),
                                  corpus.training_texts(), cfg)
        runs.log_metrics({"extraction_rate": result.rate, "extraction_ci_low": result.ci_low,
                          "extraction_ci_high": result.ci_high,
                          "audited_documents": result.documents})
    get_run_logger().info("extraction audit: %d of %d documents (%.1f%%)", result.extracted,
                          result.documents, 100 * result.rate)
    return result


@task(cache_policy=NO_CACHE)
def finish_manifest(module: Path, manifest: ExpertManifest, report: ValidationReport,
                    pii: PiiReport, proxies: ProxySelection | None, local: LocalEvaluation,
                    audit: AuditResult | None, licence: str) -> ExpertManifest:
    """The manifest that is published: training's, plus the proxy selection, the local
    evaluation, the audit, the data checks (ids of public documents, statistics, counts) and
    the module's licence."""
    manifest = manifest.model_copy(update={
        "licence": licence,
        "metrics": {**manifest.metrics, **{f"local.{k}": v for k, v in local.metrics().items()}},
        "privacy_audit": audit.model_dump() if audit else None, "proxies": proxies,
        "data_checks": {"validation": report.statistics, "pii": pii.model_dump()}})
    manifest.write(module)
    return manifest


@task(**retried(2))
def publish(contributor: str, module: Path, manifest: ExpertManifest) -> int:
    """Log the module to the flow's run and register it as a `pending` version, unless these
    exact weights are already registered and not revoked (a rerun publishes nothing new)."""
    name = registry.expert_model(contributor)
    for existing in registry.expert_versions(contributor):
        if existing.tags.weights_sha256 == manifest.weights_sha256 and \
                existing.tags.approval_status in ("pending", "approved"):
            get_run_logger().info("%s version %s already holds these weights (%s)", name,
                                  existing.version, existing.tags.approval_status)
            return existing.version
    runs.log_artifacts(module, "module")
    version = registry.register(
        name, "module",
        ExpertTags(contributor=contributor, anchor_fingerprint=manifest.anchor_fingerprint,
                   weights_sha256=manifest.weights_sha256,
                   data_fingerprint=manifest.data_fingerprint.digest,
                   code_version=manifest.code_version, **manifest.figures().model_dump()),
        description=f"Expert module of {contributor}; awaiting review.")
    events.emit(events.EXPERT_PUBLISHED, f"flexo.expert.{contributor}",
                {"registered_model": name, "version": version,
                 "weights_sha256": manifest.weights_sha256}, contributor=contributor)
    ledger.record("publish", contributor, contributor, registered_model=name, version=version,
                  weights_sha256=manifest.weights_sha256,
                  data_fingerprint=manifest.data_fingerprint.digest)
    get_run_logger().info("published %s version %d (pending review)", name, version)
    return version


@flow(name="contribute")
def contribute_flow(contributor: str, data: Path, anchor: Path | None = None,
                    config: ContributeConfig | None = None,
                    out: Path | None = None) -> ContributionResult:
    """Validate, screen, train, evaluate, audit and publish one contributor's expert module;
    `out` receives the module directory."""
    cfg = config or ContributeConfig()
    contributor = validate_contributor_id(contributor)
    check_contributor(contributor)
    anchor, anchor_fingerprint = resolve_anchor(anchor)
    target = contribution_target(contributor, out)
    with runs.flow_run(EXPERIMENT, f"contribute-{contributor}",
                       {"flexo.kind": "contribute", "flexo.contributor": contributor},
                       {"contributor": contributor, "pii_policy": cfg.pii,
                        "audit": cfg.audit is not None}) as run_id, \
            atomic_output_dir(target) as tmp:
        report = validate_data(data, cfg.validation)
        corpus, pii = screen_pii(data, cfg.pii)
        proxies = select_proxies(anchor, corpus, cfg.proxies) if cfg.proxies else None
        trained, cached = train(anchor, anchor_fingerprint, contributor, corpus, cfg.expert,
                                cfg.device)
        module = stage_module(cached, tmp / "module")
        with tempfile.TemporaryDirectory(dir=tmp) as scratch:
            dense = assemble(anchor, module, contributor, Path(scratch) / "dense")
            local = evaluate_locally(dense, anchor, corpus, cfg.device, cfg.eval_max_tokens)
            audit = audit_privacy(dense, corpus, cfg.audit) if cfg.audit else None
        manifest = finish_manifest(module, trained, report, pii, proxies, local, audit,
                                   cfg.licence)
        version = publish(contributor, module, manifest)
    return ContributionResult(
        contributor=contributor, registered_model=registry.expert_model(contributor),
        version=version, module_dir=target / "module", weights_sha256=manifest.weights_sha256,
        mlflow_run_id=run_id, validation=report, pii=pii, local=local, audit=audit,
        proxies=proxies)
