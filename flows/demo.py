"""`demo_flow`: the story of DESIGN §4 on the built-in corpora, one parent flow whose steps are the
real flows an operator, contributor or reviewer would run (Prefect shows them as subflows):

    1 anchor_flow -> 2 contribute_flow per contributor (public proxies chosen on its machine)
    -> 3 review_flow per module (declared demo reviewers) -> 4 release_flow (a candidate) ->
    5 accept_flow per contributor, on its own held-out text, then promote_flow -> 6 withdraw_flow
    (revoke and re-release a candidate) -> 7 accept_flow and promote_flow again -> 8 summary

No contributor declares what its data is: the built-in domains are only where the demo's closed
text comes from. Routing comes from the proxies each contributor published, and `production`
moves only when the contributors have measured the candidate and accepted it.
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
from flows.accept import AcceptConfig, accept_flow
from flows.anchor import anchor_flow
from flows.contribute import ContributeConfig, contribute_flow
from flows.promote import promote_flow
from flows.release import ReleaseConfig, ReleaseResult, release_flow
from flows.review import declare_reviewer, review_flow
from flows.withdraw import withdraw_flow
from flows.withdrawals import read_record
from governance.acceptance import AcceptanceReport
from governance.withdrawal import WithdrawalRecord

# Contributor id -> the built-in domain its closed text is taken from (the demo's knowledge only:
# nothing in the pipeline is told).
CONTRIBUTORS = {"code-commons": "code", "legal-aid": "legal", "med-notes": "medical"}
# Each module's licence, as its contributor grants it: the source text's own (DATA.md) where it
# is in the policy's table; the HPO's terms ask for attribution, which CC-BY-4.0 carries.
LICENCES = {"code-commons": "psf-2.0", "legal-aid": "cc-by-4.0", "med-notes": "cc-by-4.0"}
# Declared as demo reviewers (recorded so); each approves every module: the shipped policy
# wants two approvals.
REVIEWERS = ("demo-reviewer-a", "demo-reviewer-b")
WITHDRAWING = "legal-aid"
STEPS = 8


class DemoPlan(BaseModel):
    preset: str
    expert: ExpertConfig
    audit: AuditConfig
    proxies: ProxyConfig  # release router tuning learns each expert's domain from these
    eval_max_tokens: int  # the contributors' local evaluation and acceptance
    release: ReleaseConfig


def plan(quick: bool) -> DemoPlan:
    """Sizes for the default demo and `--quick` (about 4 minutes). The default measured 9.4
    minutes on 2 cores from a fresh home (the target is 10): Prefect's first start 0.5, the
    3-layer anchor 3.2, the first contributor 1.3 (0.6 of them embedding the public pool once),
    the others 0.6 each, each release about 1 (router tuning as shipped: with 30 steps of 16
    windows the first release kept public only within +2.5%), the acceptances 0.3-0.5 a
    release."""
    if quick:
        return DemoPlan(preset="tiny",
                        expert=ExpertConfig(steps=40, router_documents=100, checkpoint_every=0),
                        audit=AuditConfig(documents=8, samples=2),
                        proxies=ProxyConfig(max_documents=200), eval_max_tokens=4096,
                        release=ReleaseConfig(router_tuning_steps=20, eval_max_tokens=4096))
    return DemoPlan(preset="small",
                    expert=ExpertConfig(steps=40, router_documents=200, checkpoint_every=0),
                    audit=AuditConfig(documents=16, samples=4),
                    proxies=ProxyConfig(max_documents=400), eval_max_tokens=4096,
                    release=ReleaseConfig())


class DemoResult(BaseModel):
    home: Path
    anchor: Path
    first: ReleaseResult
    after_withdrawal: ReleaseResult
    contributions: dict[str, int]  # contributor -> registered version
    answers: dict[int, dict[str, AcceptanceReport]]  # release version -> contributor -> answer
    production: dict[int, bool]  # release version -> promoted to production
    withdrawal: WithdrawalRecord | None  # what the withdrawal kept, purged and verified


@task(cache_policy=NO_CACHE)
def contributor_data(home: Path, contributor: str, domain: str) -> Path:
    """The contributor's closed text on "their machine": a built-in domain (its documents outside
    the public mix). Its training split trains the expert; its held-out split judges releases."""
    from components.builtin_corpora import load_domain
    from components.user_data import write_directory

    data = home / "contributors" / contributor / "data"
    if not data.exists():
        write_directory(load_domain(domain), data, domain)
    return data


@task(cache_policy=NO_CACHE)
def declare_demo_reviewers() -> None:
    for name in REVIEWERS:
        declare_reviewer(name, kind="demo", organisation="flexo demo")


def answer_and_promote(version: int, data: dict[str, Path], eval_max_tokens: int,
                       ) -> tuple[dict[str, AcceptanceReport], bool]:
    """Each contributor in the release measures it on its own machine and answers; then the
    promotion the last acceptance triggers in a deployment (here called in turn)."""
    cfg = AcceptConfig(eval_max_tokens=eval_max_tokens)
    answers = {c: accept_flow(c, version, path, cfg) for c, path in data.items()}
    return answers, promote_flow(version).promoted


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
    contributions, data = {}, {}
    for i, (contributor, domain) in enumerate(CONTRIBUTORS.items()):
        say(f"2/{STEPS} contributor {contributor}: validate, select public proxies, train, "
            f"evaluate, audit and publish an expert on its closed {domain} text "
            f"({i + 1}/{len(CONTRIBUTORS)})")
        data[contributor] = contributor_data(home, contributor, domain)
        cfg = ContributeConfig(expert=p.expert, audit=p.audit, proxies=p.proxies,
                               eval_max_tokens=p.eval_max_tokens, licence=LICENCES[contributor])
        contributions[contributor] = contribute_flow(contributor, data[contributor],
                                                     anchor.directory, cfg).version
    say(f"3/{STEPS} reviewers: {', '.join(REVIEWERS)} (declared as demo reviewers) each "
        f"approve each module, the policy's gates applied")
    declare_demo_reviewers()
    for contributor, version in contributions.items():
        for reviewer in REVIEWERS:
            review_flow(contributor, version, reviewer, "approved",
                        note="demo review: automatic, not a human judgement")
    say(f"4/{STEPS} operator: merge the approved modules (routers tuned on their proxies), "
        f"evaluate, gate and register a candidate flexo-release")
    first = release_flow(p.release)
    say(f"5/{STEPS} contributors: each measures candidate v{first.version} on its own held-out "
        f"text and answers; production moves when all accept")
    answers, production = {}, {}
    answers[first.version], production[first.version] = answer_and_promote(
        first.version, data, p.eval_max_tokens)
    say(f"6/{STEPS} {WITHDRAWING} withdraws: masked at once in every runtime (deny-list), its "
        f"versions revoked and purged, and a candidate built without it")
    withdrawal = withdraw_flow(WITHDRAWING, actor=WITHDRAWING, reason="demo withdrawal",
                               release=p.release)  # judged as the first release was
    second = withdrawal.release
    say(f"7/{STEPS} contributors: the remaining ones measure candidate v{second.version} and "
        f"answer; promotion verifies it holds no tensor of {WITHDRAWING}'s module")
    answers[second.version], production[second.version] = answer_and_promote(
        second.version, {c: d for c, d in data.items() if c != WITHDRAWING}, p.eval_max_tokens)
    say(f"8/{STEPS} summary")
    return DemoResult(home=home, anchor=anchor.directory, first=first, after_withdrawal=second,
                      contributions=contributions, answers=answers, production=production,
                      withdrawal=read_record(WITHDRAWING))
