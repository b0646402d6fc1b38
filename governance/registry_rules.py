"""What a registry write may say, by who makes it (issue 17): the rules a server applies on top of
MLflow's per-model permissions, which say only *whether* a user may edit a model, not *what*.

MLflow's EDIT on `flexo-expert-<id>` is given to its contributor (to publish and withdraw) and to
reviewers (to record reviews); EDIT on `flexo-release` to contributors (to answer a release). The
tags a write sets are what separates them:

- on an expert model, the contributor (the model's own id) publishes versions and withdraws them,
  and never records a review of its own module (four eyes); anyone else with EDIT is a reviewer,
  who records reviews under its own name only (`approval.<name>`) and never creates a version;
- on a release, one who does not manage the model writes its own acceptance only
  (`acceptance.<name>`) and never moves an alias;
- a user with MANAGE on the model (an operator) and MLflow's admin are not restricted here.

Each rule returns None when the write is allowed, otherwise the refusal (one line naming the rule
and the fix).
"""

from __future__ import annotations

from collections.abc import Mapping

from governance.tags import AcceptanceTags, ApprovalTags, ReviewTags, WaiverTags

EXPERT_PREFIX = "flexo-expert-"
RELEASE_MODEL = "flexo-release"
# Tags only a reviewer writes on an expert version: approvals and waivers (keyed), the settled
# review, and a status that is a decision.
REVIEW_FIELDS = frozenset(ReviewTags.model_fields) - {"approval_status"}
DECISIONS = frozenset({"approved", "rejected"})


def _keyed_party(key: str, prefix: str) -> str | None:
    """The party of a keyed tag (`approval.<party>` or `approval.<party>.<field>`), or None."""
    return key[len(prefix):].split(".")[0] if key.startswith(prefix) else None


def _is_review_tag(key: str, value: str) -> bool:
    return (key.startswith((ApprovalTags.PREFIX, WaiverTags.PREFIX)) or key in REVIEW_FIELDS
            or (key == "approval_status" and value in DECISIONS))


def expert_tag_refusal(user: str, model: str, key: str, value: str) -> str | None:
    """May `user` (EDIT, not MANAGE, on `model`) set tag `key`=`value` on one of its versions?"""
    contributor = model.removeprefix(EXPERT_PREFIX)
    review = _is_review_tag(key, value)
    if user == contributor:
        if review:
            return (f"'{user}' contributed {model} and cannot record a review of it ({key}): "
                    f"reviews are recorded by other reviewers (four eyes)")
        return None
    if not review:
        return (f"'{user}' reviews {model} and may set review tags only, not {key}; the "
                f"contributor '{contributor}' or an operator sets it")
    party = _keyed_party(key, ApprovalTags.PREFIX)
    if party is not None and party != user:
        return (f"'{user}' may record only its own approval, not {party}'s ({key}); "
                f"{party} records it with its own credentials")
    return None


def release_tag_refusal(user: str, key: str) -> str | None:
    """May `user` (EDIT, not MANAGE, on the release model) set tag `key` on a release version?"""
    party = _keyed_party(key, AcceptanceTags.PREFIX)
    if party == user:
        return None
    return (f"'{user}' may write only its own acceptance (acceptance.{user}.*) on "
            f"{RELEASE_MODEL}, not {key}; operators manage releases")


def tag_refusal(user: str, model: str, key: str, value: str) -> str | None:
    """The rule for one tag written by a user who does not manage `model`."""
    if model.startswith(EXPERT_PREFIX):
        return expert_tag_refusal(user, model, key, value)
    if model == RELEASE_MODEL:
        return release_tag_refusal(user, key)
    return None


def version_refusal(user: str, model: str, tags: Mapping[str, str]) -> str | None:
    """May `user` (EDIT, not MANAGE) create a version of `model` carrying `tags`?"""
    if model.startswith(EXPERT_PREFIX) and user != model.removeprefix(EXPERT_PREFIX):
        return (f"'{user}' may not publish a version of {model}: only its contributor "
                f"'{model.removeprefix(EXPERT_PREFIX)}' does")
    if model == RELEASE_MODEL:
        return f"'{user}' may not create {RELEASE_MODEL} versions; operators release"
    for key, value in tags.items():
        if refusal := tag_refusal(user, model, key, value):
            return refusal
    return None


def alias_refusal(user: str, model: str, alias: str) -> str | None:
    """Aliases (`production`, `candidate`) are moved only by those who manage the model."""
    return (f"'{user}' may not move alias '{alias}' of {model}: only its operators (MANAGE on "
            f"{model}) do; ask one")
