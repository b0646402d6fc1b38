"""Review rules, the release gate and the model card: governance records, no torch."""

import pytest

from governance.release import (
    DomainFigures,
    ReleasedExpert,
    ReleaseRecord,
    judge_release,
    model_card,
)
from governance.reviews import Review, Reviewer, ReviewRefused, Roster, check_review

NOW = "2026-11-29T12:00:00+00:00"


def _expert(contributor: str) -> ReleasedExpert:
    return ReleasedExpert(contributor=contributor, registered_model=f"flexo-expert-{contributor}",
                          version=2, weights_sha256="a" * 64, data_fingerprint="b" * 64,
                          licence="CC-BY-4.0", reviewed_by="rita", reviewer_kind="demo",
                          contribute_run_id="r1")


def _figures(**changes: float) -> dict[str, DomainFigures]:
    return {d: DomainFigures(anchor=100.0, release=100.0 * (1 + c), tokens=10)
            for d, c in changes.items()}


def test_operator_gate_judges_public_text_only_and_needs_a_module():
    """The operator cannot see contributors' domains: built-in domains getting worse do not fail
    the gate (each contributor's acceptance judges its own); public text beyond the limit does."""
    experts = [_expert("hosp"), _expert("firm")]
    passing = judge_release(_figures(public=0.019, medical=0.3, legal=-0.01), experts, 0.02)
    assert passing.passed and [c.name for c in passing.checks] == ["public"]
    public_cost = judge_release(_figures(public=0.021, medical=-0.2), experts, 0.02)
    assert not public_cost.passed and public_cost.failures()[0].startswith("public:")
    assert "+2.1%" in public_cost.failures()[0] and "limit +2%" in public_cost.failures()[0]
    no_public = judge_release(_figures(medical=-0.2), experts, 0.02)
    assert no_public.failures() == ["public: no public held-out figures"]
    assert not judge_release(_figures(public=0.0), [], 0.02).passed  # nothing to release


def test_review_rules_four_eyes_pending_only_and_declared_reviewers():
    rita = Reviewer(name="rita", kind="demo")
    roster = Roster().declare(rita).declare(Reviewer(name="sam"))
    again = Roster.model_validate_json(roster.model_dump_json())  # as flows store it
    assert again.get("rita").kind == "demo"
    with pytest.raises(ReviewRefused, match="not declared"):
        again.get("mallory")

    review = Review(contributor="hosp", version=1, reviewer=rita, decision="approved", at=NOW)
    check_review(review, "pending")
    tags = review.tags().to_tags()
    assert list(tags)[-1] == "approval_status"  # status written last
    assert tags["reviewer_kind"] == "demo" and tags["reviewed_at"] == NOW
    with pytest.raises(ReviewRefused, match="only pending"):
        check_review(review, "withdrawn")
    own = Review(contributor="sam", version=1, reviewer=Reviewer(name="sam"), decision="approved",
                 at=NOW)
    with pytest.raises(ReviewRefused, match="four eyes"):
        check_review(own, "pending")


def test_model_card_credits_every_contributor_and_states_the_gate():
    experts = [_expert("hosp"), _expert("firm")]
    figures = _figures(public=0.02, medical=-0.3, legal=-0.1)
    record = ReleaseRecord(anchor_version=1, anchor_fingerprint="c" * 64, experts=experts,
                           excluded={"gone": "withdrawn"}, top_k=3, plan_digest="d" * 64,
                           checkpoint_sha256="e" * 64,
                           figures=figures, gate=judge_release(figures, experts, 0.1),
                           code_version="0.1", created_at=NOW)
    card = model_card(record)
    for needle in ("hosp", "firm", "~~gone~~", "rita (demo)", "Release gate: passed"):
        assert needle in card
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in card.splitlines()
            if line.startswith("|")]
    assert ["medical", "100.00", "70.00", "-30.0%"] in rows
    assert ["~~gone~~", "not included: withdrawn", "", "", "", ""] in rows
    # each contributor credited with its module version, licence and data fingerprint
    assert ["hosp", "flexo-expert-hosp v2", "CC-BY-4.0", f"`{'b' * 16}`", f"`{'a' * 16}`",
            "rita (demo)"] in rows
