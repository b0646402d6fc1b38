"""The registry's write rules (issue 17): what each participant with EDIT on a model may write.
The server applies them (flows/tracking/auth_app.py; tests/integration checks it there)."""

from __future__ import annotations

import pytest

from governance.registry_rules import alias_refusal, tag_refusal, version_refusal
from governance.tags import ApprovalTags, ExpertTags, ReviewTags, WithdrawalTags

SHA = "0" * 64
PUBLISHED = ExpertTags(contributor="alpha", anchor_fingerprint=SHA, weights_sha256=SHA,
                       data_fingerprint=SHA, code_version="x").to_tags()


def test_a_contributor_publishes_and_withdraws_its_own_module_and_nothing_else():
    assert version_refusal("alpha", "flexo-expert-alpha", PUBLISHED) is None
    assert "only its contributor 'beta'" in version_refusal("alpha", "flexo-expert-beta", {})
    withdrawal = WithdrawalTags(withdrawn_by="alpha", withdrawn_at="t").to_tags()
    assert all(tag_refusal("alpha", "flexo-expert-alpha", k, v) is None
               for k, v in withdrawal.items())


@pytest.mark.parametrize("tags", [
    ApprovalTags(reviewer="alpha", reviewer_kind="human", at="t").to_tags(),
    ReviewTags(reviewed_by="alpha", reviewer_kind="human", reviewed_at="t",
               approval_status="approved").to_tags(),
    {"approval_status": "rejected"},
    {"waiver.max_public_change": "because"},
])
def test_a_contributor_never_records_a_review_of_its_own_module(tags):
    refusals = [tag_refusal("alpha", "flexo-expert-alpha", k, v) for k, v in tags.items()]
    assert any(r and "four eyes" in r for r in refusals)
    assert version_refusal("alpha", "flexo-expert-alpha", PUBLISHED | tags) is not None


def test_a_reviewer_records_only_its_own_review_and_publishes_nothing():
    mine = ApprovalTags(reviewer="rev-one", reviewer_kind="human", at="t").to_tags()
    assert all(tag_refusal("rev-one", "flexo-expert-alpha", k, v) is None
               for k, v in mine.items())
    theirs = ApprovalTags(reviewer="rev-two", reviewer_kind="human", at="t").to_tags()
    assert all("only its own approval" in tag_refusal("rev-one", "flexo-expert-alpha", k, v)
               for k, v in theirs.items())
    assert tag_refusal("rev-one", "flexo-expert-alpha", "weights_sha256", SHA) is not None
    assert tag_refusal("rev-one", "flexo-expert-alpha", "approval_status", "withdrawn")
    assert version_refusal("rev-one", "flexo-expert-alpha", PUBLISHED) is not None


def test_on_a_release_a_contributor_writes_its_own_acceptance_and_moves_no_alias():
    assert tag_refusal("alpha", "flexo-release", "acceptance.alpha.change", "-0.1") is None
    assert tag_refusal("alpha", "flexo-release", "acceptance.alpha", "accepted") is None
    assert tag_refusal("alpha", "flexo-release", "acceptance.beta", "accepted") is not None
    assert tag_refusal("alpha", "flexo-release", "gate", "passed") is not None
    assert version_refusal("alpha", "flexo-release", {}) is not None
    assert "only its operators" in alias_refusal("alpha", "flexo-release", "production")
