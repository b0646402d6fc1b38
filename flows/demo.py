"""`demo_flow`: the story of DESIGN §4 on the built-in corpora, one parent flow whose steps are the
real flows an operator, contributor or reviewer would run (Prefect shows them as subflows):

    1 anchor_flow -> 2 contribute_flow per contributor (proxies chosen there) -> 3 review_flow per module (declared demo
    reviewers) -> 4 release_flow -> 5 withdraw_flow (revoke and re-release) -> 6 summary
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from components.expert_training import ExpertConfig
from components.extraction_audit import AuditConfig
from components.proxy_selection import ProxyConfig
from flows.anchor import anchor_flow
from flows.contribute import ContributeConfig, contribute_flow
from flows.release import ReleaseConfig, ReleaseResult, release_flow
from flows.review import declare_reviewer, review_flow
from flows.withdraw import withdraw_flow

# Contributor id -> the built-in domain standing in for its closed data.
CONTRIBUTORS = {"code-commons": "code", "legal-aid": "legal", "med-notes": "medical"}
REVIEWERS = ("demo-reviewer-a", "demo-reviewer-b")  # declared as demo reviewers, recorded so
WITHDRAWING = "legal-aid"
STEPS = 6


class DemoPlan(BaseModel):
    preset: str
    expert: ExpertConfig
    audit: AuditConfig
    # Proxy selection costs the default demo ~75 s (embedding the public pool once, then each
    # contributor's sample) and release routing does not read proxies yet (issue 14): the quick
    # demo runs it, so every step of a contribution is exercised and scanned for leaks.
    proxies: ProxyConfig | None
    eval_max_tokens: int  # the contributors' local evaluation
    release: ReleaseConfig


def plan(quick: bool) -> DemoPlan:
    """Sizes that keep the default demo within 10 minutes on 2 cores and `--quick` in about 2."""
    if quick:
        return DemoPlan(preset="tiny",
                        expert=ExpertConfig(steps=40, router_documents=100, checkpoint_every=0),
                        audit=AuditConfig(documents=8, samples=2),
                        proxies=ProxyConfig(max_documents=200), eval_max_tokens=4096,
                        release=ReleaseConfig(router_tuning_steps=10, eval_max_tokens=4096,
                                              max_public_increase=0.5))
    return DemoPlan(preset="small",
                    expert=ExpertConfig(steps=150, router_documents=300, checkpoint_every=0),
                    audit=AuditConfig(documents=16, samples=4),
                    proxies=None, eval_max_tokens=16_384,
                    release=ReleaseConfig(router_tuning_steps=30, eval_max_tokens=16_384))


class DemoResult(BaseModel):
    home: Path
    anchor: Path
    first: ReleaseResult
    after_withdrawal: ReleaseResult
    contributions: dict[str, int]  # contributor -> registered version


@task(cache_policy=NO_CACHE)
def contributor_data(home: Path, contributor: str, domain: str) -> Path:
    """The contributor's closed text on "their machine": the built-in domain's train split."""
    from components.builtin_corpora import load_domain
    from components.user_data import write_directory

    data = home / "contributors" / contributor / "data"
    if not data.exists():
        write_directory(load_domain(domain).split("train"), data, domain)
    return data


@task(cache_policy=NO_CACHE)
def declare_demo_reviewers() -> None:
    for name in REVIEWERS:
        declare_reviewer(name, kind="demo", organisation="flexo demo")


@flow(name="demo")
def demo_flow(home: Path, quick: bool = False,
              say: Callable[[str], None] | None = None) -> DemoResult:
    """Run the whole story in `home` (FLEXO_HOME); `say` (default: the run logger) reports each
    step as it starts."""
    p = plan(quick)
    say = say or get_run_logger().info
    say(f"1/{STEPS} operator: train the public anchor ({p.preset} preset) and register "
        f"flexo-anchor")
    anchor = anchor_flow(preset=p.preset)
    contributions = {}
    for i, (contributor, domain) in enumerate(CONTRIBUTORS.items()):
        say(f"2/{STEPS} contributor {contributor}: validate, train, evaluate, audit and publish "
            f"an expert on its closed {domain} text ({i + 1}/{len(CONTRIBUTORS)})")
        data = contributor_data(home, contributor, domain)
        cfg = ContributeConfig(expert=p.expert, audit=p.audit, proxies=p.proxies, domain=domain,
                               eval_max_tokens=p.eval_max_tokens)
        contributions[contributor] = contribute_flow(contributor, data, anchor.directory,
                                                     cfg).version
    say(f"3/{STEPS} reviewers: {', '.join(REVIEWERS)} (declared as demo reviewers) approve each "
        f"module")
    declare_demo_reviewers()
    for i, (contributor, version) in enumerate(contributions.items()):
        review_flow(contributor, version, REVIEWERS[i % len(REVIEWERS)], "approved",
                    note="demo review: automatic, not a human judgement")
    say(f"4/{STEPS} operator: merge the approved modules, evaluate, gate and register "
        f"flexo-release")
    first = release_flow(p.release)
    say(f"5/{STEPS} {WITHDRAWING} withdraws: its versions are revoked and the release is rebuilt "
        f"without it")
    withdrawal = withdraw_flow(WITHDRAWING, actor=WITHDRAWING, reason="demo withdrawal",
                               release=p.release)  # judged as the first release was
    say(f"6/{STEPS} summary")
    return DemoResult(home=home, anchor=anchor.directory, first=first,
                      after_withdrawal=withdrawal.release, contributions=contributions)
