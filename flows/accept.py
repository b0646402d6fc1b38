"""`accept_flow`: a contributor's answer to a candidate release, run on its own machine.

    fetch release V and its anchor (each checked against the fingerprint the registry records)
    -> load and screen the contributor's data as its contribution did (same PII policy, so the
    same held-out split) -> evaluate anchor and release on its held-out text, and where the
    release routes it -> answer: accepted when its own-domain perplexity falls by the margin;
    the figures as tags on the release version and metrics of an MLflow run, and
    `flexo.release.accepted` or `flexo.release.rejected`

Only the contributor can measure whether a release helps its domain, and only numbers leave its
machine: perplexities, the change, routing shares and the verdict. `promote_flow` moves
`production` once every contributor in the release has accepted it.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from components.evaluation import AcceptanceFigures
from components.pii import PiiPolicy
from flows import events, ledger, withdrawals
from flows.retries import retried
from flows.tracking import registry, releases, runs
from governance.acceptance import AcceptanceReport, accepts
from governance.contributors import validate_contributor_id
from governance.tags import AcceptanceTags, RegistryVersion, ReleaseTags

EXPERIMENT = "flexo-accept"


class AcceptConfig(BaseModel):
    """How a contributor judges a release."""

    margin: float = Field(0.0, ge=0, lt=1)  # own-domain perplexity must fall at least this much
    pii: PiiPolicy = "redact"  # as in the contribution: same split
    eval_max_tokens: int = Field(16_384, gt=0)  # held-out tokens, own and public
    device: str | None = None


@task(**retried(3))
def fetch_release(contributor: str,
                  version: int) -> tuple[Path, Path, RegistryVersion[ReleaseTags]]:
    """Local copies of release `version` and its anchor, each checked against the fingerprint
    the registry records; a release that does not hold the contributor's module is refused."""
    from components.anchor import read_fingerprint
    from components.errors import CheckpointError
    from components.fingerprint import fingerprint_checkpoint

    runs.configure()
    release = registry.release_version(version)
    if not release.tags.holds(contributor):
        raise ledger.refuse(contributor, f"{registry.RELEASE_MODEL} v{version}", "accept",
                            f"{registry.RELEASE_MODEL} version {version} does not include "
                            f"{contributor}'s module (it holds "
                            f"{', '.join(release.tags.experts) or 'none'}); nothing to accept")
    anchor = registry.download(registry.anchor_version(number=release.tags.anchor_version),
                               "anchor", "anchors")
    if read_fingerprint(anchor) != release.tags.anchor_fingerprint:
        raise CheckpointError(f"anchor version {release.tags.anchor_version} does not match the "
                              f"fingerprint release {version} was built on; ask the operator")
    checkpoint = releases.download_checkpoint(version)
    actual = fingerprint_checkpoint(checkpoint)
    if actual != release.tags.checkpoint_sha256:
        raise CheckpointError(f"release {version}'s weights ({actual[:12]}) differ from the "
                              f"registered {release.tags.checkpoint_sha256[:12]}; delete "
                              f"{checkpoint.parent} and run again, or ask the operator")
    return checkpoint, anchor, release


@task(cache_policy=NO_CACHE)
def evaluate_release(checkpoint: Path, anchor: Path, data: Path, contributor: str,
                     cfg: AcceptConfig) -> AcceptanceFigures:
    """Anchor and release on the contributor's held-out documents, and the routing shares."""
    from components.builtin_corpora import PUBLIC, load_domain
    from components.evaluation import evaluate_for_acceptance
    from flows.contribute import screen_pii

    corpus, _ = screen_pii.fn(data, cfg.pii)  # in this task: the text never leaves it
    figures = evaluate_for_acceptance(checkpoint, anchor, corpus, load_domain(PUBLIC),
                                      contributor, device=cfg.device,
                                      max_tokens=cfg.eval_max_tokens,
                                      deny_list=withdrawals.deny_list_path())
    get_run_logger().info(
        "own held-out text (%d documents): anchor %.2f, release %.2f (%+.1f%%); its expert gets "
        "%.0f%% of router mass there, %.0f%% on public text", figures.held_out_documents,
        figures.anchor_perplexity, figures.release_perplexity, 100 * figures.change,
        100 * figures.own_routing_share, 100 * figures.public_routing_share)
    return figures


@task(**retried(2))
def answer(contributor: str, version: int, figures: AcceptanceFigures,
           cfg: AcceptConfig) -> AcceptanceReport:
    """The verdict, on record: tags on the release version (verdict last), metrics of this run,
    and the event `promote` listens for."""
    from components.clock import timestamp

    accepted = accepts(figures.change, cfg.margin)
    report = AcceptanceReport(
        contributor=contributor, release=version, anchor_perplexity=figures.anchor_perplexity,
        release_perplexity=figures.release_perplexity, change=figures.change,
        own_routing_share=figures.own_routing_share,
        public_routing_share=figures.public_routing_share, accepted=accepted)
    numbers = report.model_dump(exclude={"contributor", "release", "accepted"})
    runs.log_metrics(numbers | {"held_out_documents": figures.held_out_documents,
                                "margin": cfg.margin, "accepted": float(accepted)})
    registry.tag_version(registry.RELEASE_MODEL, version, AcceptanceTags(
        contributor=contributor, **numbers, run_id=runs.active_run_id(),
        answered_at=timestamp(), verdict="accepted" if accepted else "rejected"))
    events.emit(events.RELEASE_ACCEPTED if accepted else events.RELEASE_REJECTED,
                f"flexo.release.{version}", report.model_dump(), contributor=contributor)
    ledger.record("acceptance", contributor, f"{registry.RELEASE_MODEL} v{version}",
                  verdict="accepted" if accepted else "rejected", change=figures.change,
                  margin=cfg.margin, own_routing_share=figures.own_routing_share)
    get_run_logger().info("%s %s %s version %d (own-domain perplexity %+.1f%%, margin %.1f%%)",
                          contributor, "accepts" if accepted else "rejects",
                          registry.RELEASE_MODEL, version, 100 * figures.change, 100 * cfg.margin)
    return report


@flow(name="accept")
def accept_flow(contributor: str, release: int, data: Path,
                config: AcceptConfig | None = None) -> AcceptanceReport:
    """Evaluate release `release` on `contributor`'s own held-out text (in `data`, on this
    machine) and record its answer."""
    cfg = config or AcceptConfig()
    contributor = validate_contributor_id(contributor)
    checkpoint, anchor, _ = fetch_release(contributor, release)
    with runs.flow_run(EXPERIMENT, f"accept-{contributor}-v{release}",
                       {"flexo.kind": "accept", "flexo.contributor": contributor,
                        "flexo.release_version": str(release)},
                       cfg.model_dump(exclude={"device"})):
        figures = evaluate_release(checkpoint, anchor, Path(data), contributor, cfg)
        return answer(contributor, release, figures, cfg)

