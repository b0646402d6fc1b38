"""Review rules, the release gate and the model card: governance records, no torch."""

import pytest

from governance.policy import Policy
from governance.release import (
    DomainFigures,
    ReleasedExpert,
    ReleaseRecord,
    judge_release,
    model_card,
)
from governance.reviews import (
    Review,
    Reviewer,
    ReviewRefused,
    Roster,
    check_gates,
    check_review,
)
from governance.tags import ExpertTags, ExpertVersionTags

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
    check_review(review, _published())
    with pytest.raises(ReviewRefused, match="only pending"):
        check_review(review, _published(approval_status="withdrawn"))
    own = Review(contributor="sam", version=1, reviewer=Reviewer(name="sam"), decision="approved",
                 at=NOW)
    with pytest.raises(ReviewRefused, match="four eyes"):
        check_review(own, _published())


def _published(**tags: str) -> ExpertVersionTags:
    """A version as contribute publishes it: a module that passes the shipped gates."""
    published = ExpertTags(contributor="hosp", anchor_fingerprint="a" * 64,
                           weights_sha256="b" * 64, data_fingerprint="c" * 64, code_version="0.1",
                           licence="cc-by-4.0", own_change=-0.1, public_change=0.01,
                           extraction_rate=0.0).to_tags()
    return ExpertVersionTags.from_tags(published | tags)


def _review(reviewer: str, decision: str = "approved", at: str = NOW, **extra) -> Review:
    return Review(contributor="hosp", version=1, reviewer=Reviewer(name=reviewer),
                  decision=decision, at=at, **extra)


def test_a_version_is_approved_by_the_required_number_of_distinct_reviewers():
    first = _review("rita", note="looks fine")
    approval = first.approval().to_tags()
    assert list(approval)[-1] == "approval.rita" and approval["approval.rita"] == NOW
    current = _published(**approval)
    assert list(current.approvals) == ["rita"] and current.approval_status == "pending"
    # one of two: nothing settled, the version stays pending
    assert first.settled(current.approvals, required=2) is None
    with pytest.raises(ReviewRefused, match="already approved"):  # the same reviewer twice
        check_review(_review("rita", at="later"), current)
    second = _review("sam", at="2026-11-29T12:05:00+00:00")
    check_review(second, current)
    both = _published(**approval, **second.approval().to_tags()).approvals
    settled = second.settled(both, required=2).to_tags()
    assert list(settled)[-1] == "approval_status"  # status written last
    assert (settled["approval_status"], settled["reviewed_by"], settled["reviewer_kind"]) == \
        ("approved", "rita,sam", "human")
    # one rejection rejects, whatever the approvals so far
    rejection = _review("sam", "rejected", note="no").settled(current.approvals, required=2)
    assert (rejection.approval_status, rejection.reviewed_by) == ("rejected", "sam")


def test_an_approval_passes_the_gates_or_waives_them_with_a_note():
    leaky = _published(extraction_rate="0.25")
    with pytest.raises(ReviewRefused) as refused:
        check_gates(_review("rita"), Policy(), leaky)
    assert "module_gates.max_extraction_rate: extraction rate 25.0%, at most 5.0%" in \
        str(refused.value)
    waived = _review("rita", note="audit on 8 documents", waivers={"max_extraction_rate": "8 docs"})
    check_review(waived, leaky)
    check_gates(waived, Policy(), leaky)
    # recorded on the version, the waiver holds for the next reviewer
    on_record = _published(extraction_rate="0.25", **waived.waiver_tags()[0].to_tags())
    assert on_record.waivers["max_extraction_rate"].note == "8 docs"
    check_gates(_review("sam"), Policy(), on_record)
    with pytest.raises(ReviewRefused, match="needs a note"):
        check_review(_review("rita", waivers={"max_extraction_rate": " "}), leaky)
    with pytest.raises(ReviewRefused, match="not a gate that can be waived"):
        check_review(_review("rita", waivers={"licence": "ours"}), leaky)
    with pytest.raises(ReviewRefused, match="only when approving"):
        check_review(_review("rita", "rejected", waivers={"dp_required": "x"}), leaky)
    with pytest.raises(ReviewRefused, match="licence 'proprietary' is unknown"):
        check_gates(waived, Policy(), _published(licence="proprietary"))


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
