"""Registry tags as records (written and parsed in one place) and the release's selection rule."""

import pytest
from pydantic import ValidationError

from governance.acceptance import accepts, promotion_blockers
from governance.selection import select_experts
from governance.tags import (
    AcceptanceTags,
    ExpertTags,
    ExpertVersionTags,
    RegistryVersion,
    ReleaseTags,
    ReviewTags,
    WithdrawalTags,
)

ANCHOR, OTHER = "a" * 64, "f" * 64


def _release(**changes) -> ReleaseTags:
    fields = {"anchor_version": 3, "anchor_fingerprint": ANCHOR, "experts": {"hosp": 2, "firm": 1},
              "excluded": ["gone"], "gate": "passed", "plan_digest": "p" * 64,
              "checkpoint_sha256": "c" * 64, "release_run_id": "r1", "evaluation_run_id": "e1", "code_version": "0.1"}
    return ReleaseTags(**fields | changes)


def test_release_tags_have_one_spelling_and_round_trip():
    tags = _release().to_tags()
    assert tags["experts"] == "hosp:2,firm:1" and tags["excluded"] == "gone"
    assert all(isinstance(v, str) for v in tags.values())
    back = ReleaseTags.from_tags(tags | {"added-in-the-ui": "x"})  # unknown tags are ignored
    assert back == _release() and back.holds("hosp") and not back.holds("gone")
    empty = ReleaseTags.from_tags(_release(experts={}, excluded=[]).to_tags())
    assert (empty.experts, empty.excluded) == ({}, [])
    with pytest.raises(ValidationError):  # a contributor id governance would refuse
        ReleaseTags.from_tags(tags | {"experts": "Bad_ID:1"})


def test_decisions_write_their_status_last():
    review = ReviewTags(reviewed_by="rita", reviewer_kind="demo", reviewed_at="t",
                        approval_status="approved")
    withdrawal = WithdrawalTags(withdrawn_by="hosp", withdrawn_at="t")
    assert list(review.to_tags())[-1] == list(withdrawal.to_tags())[-1] == "approval_status"
    assert withdrawal.to_tags()["approval_status"] == "withdrawn"


def _version(contributor: str, number: int, status: str, anchor: str = ANCHOR,
             **extra: str) -> RegistryVersion[ExpertVersionTags]:
    published = ExpertTags(contributor=contributor, anchor_fingerprint=anchor,
                           weights_sha256="b" * 64, data_fingerprint="c" * 64,
                           code_version="0.1").to_tags()
    tags = ExpertVersionTags.from_tags(published | {"approval_status": status} | extra)
    return RegistryVersion[ExpertVersionTags](name=f"flexo-expert-{contributor}", version=number,
                                              run_id=f"run-{contributor}-{number}", tags=tags)


def test_selection_takes_the_newest_approved_version_on_this_anchor_and_says_why_not():
    candidates = {
        "hosp": [_version("hosp", 3, "pending"), _version("hosp", 2, "approved",
                                                          reviewed_by="rita"),
                 _version("hosp", 1, "approved")],
        "firm": [_version("firm", 1, "withdrawn")],
        "lab": [_version("lab", 2, "pending"), _version("lab", 1, "rejected")],
        "old": [_version("old", 1, "approved", anchor=OTHER)],
        "bank": [_version("bank", 1, "approved")],  # asked to withdraw, not yet revoked
    }
    selection = select_experts(3, ANCHOR, candidates, denied=frozenset({"bank"}))
    assert [(e.contributor, e.version, e.reviewed_by) for e in selection.experts] == \
        [("hosp", 2, "rita")]
    assert selection.experts[0].contribute_run_id == "run-hosp-2"
    # the withdrawn are left out without being named in what the release writes
    assert selection.excluded == {"lab": "no approved version (1 pending)",
                                  "old": "version 1 was trained on another anchor (ffffffffffff)"}
    assert selection.withdrawn == ["bank", "firm"]


def _answer(contributor: str, change: float) -> AcceptanceTags:
    return AcceptanceTags(contributor=contributor, anchor_perplexity=100.0,
                          release_perplexity=100.0 * (1 + change), change=change,
                          own_routing_share=0.4, public_routing_share=0.05, run_id="a1",
                          answered_at="t", verdict="accepted" if accepts(change, 0.0) else
                          "rejected")


def test_acceptances_are_per_contributor_tags_with_the_verdict_last():
    answer = _answer("hosp", -0.12).to_tags()
    assert list(answer)[-1] == "acceptance.hosp" and answer["acceptance.hosp"] == "accepted"
    assert answer["acceptance.hosp.change"] == "-0.12"
    assert all(k.startswith("acceptance.hosp") for k in answer)  # one key set per contributor
    tags = _release().to_tags() | answer | _answer("firm", 0.01).to_tags()
    back = ReleaseTags.from_tags(tags)
    assert back.acceptances["hosp"] == _answer("hosp", -0.12)
    assert back.acceptances["firm"].verdict == "rejected"
    assert "acceptances" not in back.to_tags()  # never written as one tag
    figures_only = {k: v for k, v in answer.items() if k != "acceptance.hosp"}
    assert ReleaseTags.from_tags(_release().to_tags() | figures_only).acceptances == {}


def test_production_needs_the_gate_and_every_included_contributor_to_accept():
    assert not accepts(0.0, 0.0) and accepts(-0.001, 0.0) and not accepts(-0.04, 0.05)
    none_yet = ReleaseTags.from_tags(_release().to_tags())
    assert promotion_blockers(none_yet) == ["hosp has not answered", "firm has not answered"]
    one = ReleaseTags.from_tags(_release().to_tags() | _answer("hosp", -0.1).to_tags())
    assert promotion_blockers(one) == ["firm has not answered"]
    rejected = ReleaseTags.from_tags(one.to_tags() | _answer("hosp", -0.1).to_tags()
                                     | _answer("firm", 0.03).to_tags())
    assert promotion_blockers(rejected) == ["firm rejected it (own-domain perplexity +3.0%)"]
    both = _answer("hosp", -0.1).to_tags() | _answer("firm", -0.02).to_tags()
    assert promotion_blockers(ReleaseTags.from_tags(_release().to_tags() | both)) == []
    failed_gate = ReleaseTags.from_tags(_release(gate="failed").to_tags() | both)
    assert promotion_blockers(failed_gate) == ["the operator's gate failed"]
    accepted = ReleaseTags.from_tags(_release().to_tags() | both)
    assert promotion_blockers(accepted, 3, frozenset({"firm"})) == ["firm has withdrawn"]
    assert promotion_blockers(accepted, 3, production=4) == [
        "production already holds the newer version 4"]
    assert promotion_blockers(accepted, 3, production=3) == ["it is production already"]
    assert promotion_blockers(accepted, 3, production=2) == []
    # an answer from someone not in the release counts for nothing
    outsider = ReleaseTags.from_tags(_release().to_tags() | _answer("gone", -0.5).to_tags())
    assert len(promotion_blockers(outsider)) == 2
