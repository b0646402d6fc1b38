"""`contribute_flow`: a data owner's step, run on their own machine (DESIGN §4).

validate -> PII screen -> train the expert -> assemble anchor + module -> local evaluation ->
extraction audit -> publish the module as a `pending` version of `flexo-expert-<id>`.

Raw text lives only inside these tasks' memory: what reaches MLflow, Prefect and the registry is
the module, its manifest, counts, digests and perplexities. A failed check stops the flow before
training, so nothing is trained and no version is created.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import mlflow
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from pydantic import BaseModel, Field

from components.documents import Corpus
from components.errors import DataError
from components.expert_training import ExpertConfig
from components.extraction_audit import AuditConfig, AuditResult
from components.local_evaluation import LocalEvaluation
from components.pii import PiiReport
from components.validation import ValidationConfig, ValidationReport
from flows import tracking
from flows.registry import expert_model, versions
from flows.settings import flexo_home
from governance.contributors import validate_contributor_id
from governance.manifest import ExpertManifest

EXPERIMENT = "flexo-contribute"
PUBLISHED_EVENT = "flexo.expert.published"


class ContributeConfig(BaseModel):
    """Everything a contribution run is configured by (the contribution config)."""

    expert: ExpertConfig = ExpertConfig()
    validation: ValidationConfig = ValidationConfig()
    pii: Literal["fail", "redact", "allow"] = "redact"
    audit: AuditConfig | None = AuditConfig()  # None skips the extraction audit
    device: str | None = None
    eval_max_tokens: int = Field(65_536, gt=0)  # held-out tokens per corpus, local evaluation
    # The built-in domain whose public held-out text stands for this data in release evaluations
    # (the operator never sees the data itself); None: judged on the public mix only.
    domain: str | None = None


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


@task(cache_policy=NO_CACHE)
def validate_data(data: Path, cfg: ValidationConfig) -> ValidationReport:
    """Great Expectations suite over the directory; a failure stops the flow with its reason."""
    from components.validation import validate_directory

    with tracking.child_run("validate"):
        report, gx_result = validate_directory(data, cfg)
        mlflow.log_metrics({f"data.{k}": v for k, v in report.statistics.items()})
        mlflow.log_dict(report.model_dump(), "validation.json")
        mlflow.log_dict(gx_result, "gx_result.json")
        mlflow.set_tag("data_checks", "passed" if report.success else "failed")
    if not report.success:
        raise DataError(f"data checks failed: {', '.join(report.failed)}; fix the data in {data} "
                        f"(`flexo validate --data {data}` shows the statistics)")
    get_run_logger().info("data checks passed: %d documents", report.statistics["documents"])
    return report


@task(cache_policy=NO_CACHE)
def screen_pii(data: Path, policy: str) -> tuple[Corpus, PiiReport]:
    """Load the corpus and apply the PII policy: the corpus returned is what training sees."""
    from components.pii import screen
    from components.user_data import load_directory

    corpus = load_directory(data)
    sources = [d.source for d in corpus.documents]
    texts, report = screen([d.text for d in corpus.documents], policy)
    with tracking.child_run("pii"):
        mlflow.log_param("policy", policy)
        mlflow.log_metrics({f"pii.{kind}": n for kind, n in report.counts.items()})
        mlflow.log_metric("pii.documents_with_pii", report.documents_with_pii)
    if policy == "fail" and report.found:
        raise DataError(f"PII found ({report.found} values in {report.documents_with_pii} "
                        f"documents) and the policy is 'fail'; remove it or use --pii redact")
    if policy == "redact":
        corpus = Corpus.from_texts(corpus.name, zip(texts, sources, strict=True),
                                   licence=corpus.licence, description=corpus.description)
    found = ", ".join(f"{k} {v}" for k, v in report.counts.items() if v) or "none"
    get_run_logger().info("PII (%s): %s", policy, found)
    return corpus, report


def training_key(anchor_fingerprint: str, contributor: str, data_digest: str,
                 cfg: ExpertConfig) -> str:
    """What a trained module is a function of: the anchor, the (screened) data, the config and
    the code. Equal keys mean an equal module, so the training task is cached on this key."""
    import hashlib
    import json

    from flows.versioning import code_version

    blob = json.dumps({"anchor": anchor_fingerprint, "contributor": contributor,
                       "data": data_digest, "config": cfg.model_dump(mode="json"),
                       "code": code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@task(cache_key_fn=lambda _context, parameters: f"flexo-train-{parameters['key']}",
      persist_result=True, result_serializer="json")
def train(key: str, anchor: Path, contributor: str, corpus: Corpus, cfg: ExpertConfig,
          device: str | None) -> ExpertManifest:
    """Train into `$FLEXO_HOME/modules/<id>/<key>`; a rerun with the same key is a cache hit
    (Prefect keeps the manifest under FLEXO_HOME) and trains nothing."""
    from flows.modules import train_module

    out = module_cache(contributor, key)
    shutil.rmtree(out, ignore_errors=True)  # a crashed run's leftovers; never a finished module
    with tracking.child_run("train"):
        tracking.log_flat_params(cfg.model_dump())
        fp = corpus.fingerprint()
        tracking.log_fingerprint_input(f"{contributor}-corpus", fp.digest, "training",
                                       documents=str(fp.documents))
        manifest, result = train_module(anchor, contributor, corpus, cfg, out, device=device)
        tracking.log_curve("loss", result.losses)
        mlflow.log_metrics(result.metrics)
        if result.privacy:
            mlflow.log_metrics({f"dp.{k}": float(v) for k, v in result.privacy.model_dump().items()})
    return manifest


def module_cache(contributor: str, key: str) -> Path:
    return flexo_home() / "modules" / contributor / key[:24]


def cached_module_intact(directory: Path, manifest: ExpertManifest) -> bool:
    from components.expert_module import file_sha256

    weights = directory / manifest.weights_file
    return weights.is_file() and file_sha256(weights) == manifest.weights_sha256


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
    from components.local_evaluation import evaluate_against_anchor

    with tracking.child_run("evaluate"):
        local = evaluate_against_anchor(model, anchor, corpus, load_domain(PUBLIC), device=device,
                                        max_tokens=max_tokens)
        mlflow.log_metrics(local.metrics())
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

    texts = corpus.training_texts()
    with tracking.child_run("audit"):
        result = extraction_audit(load_flexo_model(model), load_tokenizer(model), texts, cfg)
        mlflow.log_metrics({"extraction_rate": result.rate, "extraction_ci_low": result.ci_low,
                            "extraction_ci_high": result.ci_high,
                            "audited_documents": result.documents})
    get_run_logger().info("extraction audit: %d of %d documents (%.1f%%)", result.extracted,
                          result.documents, 100 * result.rate)
    return result


@task(retries=2, retry_delay_seconds=[2, 5], cache_policy=NO_CACHE)
def publish(contributor: str, module: Path, manifest: ExpertManifest, domain: str | None) -> int:
    """Log the module to the flow's run and register it as a `pending` version, unless these
    exact weights are already registered and not revoked (a rerun publishes nothing new)."""
    name = expert_model(contributor)
    for existing in versions(name):
        if existing.tags.get("weights_sha256") == manifest.weights_sha256 and \
                existing.tags.get("approval_status") in ("pending", "approved"):
            get_run_logger().info("%s version %s already holds these weights (%s)", name,
                                  existing.version, existing.tags["approval_status"])
            return int(existing.version)
    mlflow.log_artifacts(str(module), artifact_path="module")
    version = tracking.register_version(
        name, "module",
        tags={"approval_status": "pending", "contributor": contributor,
              "anchor_fingerprint": manifest.anchor_fingerprint,
              "weights_sha256": manifest.weights_sha256,
              "data_fingerprint": manifest.data_fingerprint.digest,
              "domain": domain or "", "code_version": manifest.code_version},
        description=f"Expert module of {contributor}; awaiting review.")
    emit_event(event=PUBLISHED_EVENT,
               resource={"prefect.resource.id": f"flexo.expert.{contributor}",
                         "flexo.contributor": contributor},
               payload={"registered_model": name, "version": version,
                        "weights_sha256": manifest.weights_sha256})
    get_run_logger().info("published %s version %d (pending review)", name, version)
    return version


@flow(name="contribute")
def contribute_flow(contributor: str, data: Path, anchor: Path | None = None,
                    config: ContributeConfig | None = None,
                    out: Path | None = None) -> ContributionResult:
    """Validate, screen, train, evaluate, audit and publish one contributor's expert module.

    `out` (default `$FLEXO_HOME/contributions/<id>/<time>`) receives the module directory.
    """
    from components.anchor import read_fingerprint
    from components.atomic_dir import atomic_output_dir, check_output_dir

    cfg = config or ContributeConfig()
    contributor = validate_contributor_id(contributor)
    tracking.configure()
    if anchor is None:
        from flows.anchor import registered_anchor

        anchor = registered_anchor()
    anchor_fingerprint = read_fingerprint(anchor)  # a wrong anchor fails before any text is read
    target = check_output_dir(out or flexo_home() / "contributions" / contributor
                              / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}")
    tracking.use_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"contribute-{contributor}") as run, \
            atomic_output_dir(target) as tmp:
        mlflow.set_tags({"flexo.kind": "contribute", "flexo.contributor": contributor})
        tracking.log_flat_params({"contributor": contributor, "pii_policy": cfg.pii,
                                  "audit": cfg.audit is not None})
        report = validate_data(data, cfg.validation)
        corpus, pii = screen_pii(data, cfg.pii)
        key = training_key(anchor_fingerprint, contributor,
                           corpus.fingerprint().digest, cfg.expert)
        manifest = train(key, anchor, contributor, corpus, cfg.expert, cfg.device)
        if not cached_module_intact(module_cache(contributor, key), manifest):
            manifest = train.with_options(refresh_cache=True)(
                key, anchor, contributor, corpus, cfg.expert, cfg.device)
        module = tmp / "module"
        shutil.copytree(module_cache(contributor, key), module)
        with tempfile.TemporaryDirectory(dir=tmp) as scratch:
            dense = assemble(anchor, module, contributor, Path(scratch) / "dense")
            local = evaluate_locally(dense, anchor, corpus, cfg.device, cfg.eval_max_tokens)
            audit = audit_privacy(dense, corpus, cfg.audit) if cfg.audit else None
        manifest = manifest.model_copy(update={
            "metrics": {**manifest.metrics, **{f"local.{k}": v for k, v in local.metrics().items()}},
            "privacy_audit": audit.model_dump() if audit else None,
            "data_checks": {"validation": report.statistics, "pii": pii.model_dump()}})
        manifest.write(module)  # published with the module by `publish`
        version = publish(contributor, module, manifest, cfg.domain)
        run_id = run.info.run_id
    return ContributionResult(
        contributor=contributor, registered_model=expert_model(contributor), version=version,
        module_dir=target / "module", weights_sha256=manifest.weights_sha256,
        mlflow_run_id=run_id, validation=report, pii=pii, local=local, audit=audit)
