"""The demo's story (DESIGN §4), told through the real flows on the built-in corpora: anchor ->
three contributors' experts -> reviews by declared demo reviewers -> release -> a withdrawal ->
the re-release. Each step is the flow an operator, contributor or reviewer would run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from components.expert_training import ExpertConfig
from components.extraction_audit import AuditConfig
from flows.contribute import ContributeConfig
from flows.release import ReleaseConfig, ReleaseResult

# Contributor id -> the built-in domain standing in for its closed data.
CONTRIBUTORS = {"code-commons": "code", "legal-aid": "legal", "med-notes": "medical"}
REVIEWERS = ("demo-reviewer-a", "demo-reviewer-b")  # declared as demo reviewers, recorded so
WITHDRAWING = "legal-aid"


class DemoPlan(BaseModel):
    preset: str
    expert: ExpertConfig
    audit: AuditConfig
    eval_max_tokens: int  # the contributors' local evaluation
    release: ReleaseConfig


def plan(quick: bool) -> DemoPlan:
    """Sizes that keep the default demo within 10 minutes on 2 cores and `--quick` in about 2."""
    if quick:
        return DemoPlan(preset="tiny",
                        expert=ExpertConfig(steps=40, router_documents=100, checkpoint_every=0),
                        audit=AuditConfig(documents=8, samples=2), eval_max_tokens=4096,
                        release=ReleaseConfig(router_tuning_steps=10, eval_max_tokens=4096,
                                              max_public_increase=0.5))
    return DemoPlan(preset="small",
                    expert=ExpertConfig(steps=150, router_documents=300, checkpoint_every=0),
                    audit=AuditConfig(documents=16, samples=4), eval_max_tokens=16_384,
                    release=ReleaseConfig(router_tuning_steps=30, eval_max_tokens=16_384))


class DemoResult(BaseModel):
    home: Path
    anchor: Path
    first: ReleaseResult
    after_withdrawal: ReleaseResult
    contributions: dict[str, int]  # contributor -> registered version


def run_demo(home: Path, quick: bool, say: Callable[[str], None]) -> DemoResult:
    """Run the whole story in `home` (FLEXO_HOME); `say` reports each step as it starts."""
    from components.builtin_corpora import load_domain
    from components.user_data import write_directory
    from flows.anchor import anchor_flow
    from flows.contribute import contribute_flow
    from flows.release import release_flow
    from flows.review import declare_reviewer, record_review
    from flows.withdraw import withdraw_flow

    p = plan(quick)
    say(f"1/6 operator: train the public anchor ({p.preset} preset) and register flexo-anchor")
    anchor = anchor_flow(preset=p.preset)
    contributions = {}
    for i, (contributor, domain) in enumerate(CONTRIBUTORS.items()):
        say(f"2/6 contributor {contributor}: validate, train, evaluate, audit and publish an "
            f"expert on its closed {domain} text ({i + 1}/{len(CONTRIBUTORS)})")
        data = home / "contributors" / contributor / "data"  # stays on "their machine"
        if not data.exists():
            write_directory(load_domain(domain).split("train"), data, domain)
        cfg = ContributeConfig(expert=p.expert, audit=p.audit, domain=domain,
                               eval_max_tokens=p.eval_max_tokens)
        contributions[contributor] = contribute_flow(contributor, data, anchor.directory,
                                                     cfg).version
    say(f"3/6 reviewers: {', '.join(REVIEWERS)} (declared as demo reviewers) approve each module")
    for name in REVIEWERS:
        declare_reviewer(name, kind="demo", organisation="flexo demo")
    for i, (contributor, version) in enumerate(contributions.items()):
        record_review(contributor, version, REVIEWERS[i % len(REVIEWERS)], "approved",
                      note="demo review: automatic, not a human judgement")
    say("4/6 operator: merge the approved modules, evaluate, gate and register flexo-release")
    first = release_flow(p.release)
    say(f"5/6 {WITHDRAWING} withdraws: its versions are revoked and the release is rebuilt "
        f"without it")
    withdrawal = withdraw_flow(WITHDRAWING, actor=WITHDRAWING, reason="demo withdrawal")
    say("6/6 summary")
    return DemoResult(home=home, anchor=anchor.directory, first=first,
                      after_withdrawal=withdrawal.release,
                      contributions=contributions)
