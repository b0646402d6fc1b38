"""Access by role (the policy's `roles`): who may release and promote, contribute, review, and
which experts a consumer may switch on.

Identity is the name a caller gives (`--as` on the command line: trust on the command line in the
embedded mode; a server deployment maps it onto its own identities). Every refusal names the rule
(`roles.<list>`), who was refused and how to be admitted.
"""

from __future__ import annotations

import hmac

from governance.policy import Policy, key_digest


class AccessRefused(ValueError):
    """A role the policy does not give; `rule` is the policy field that refused."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


def _listed(names: list[str]) -> str:
    return ", ".join(names) or "none"


def require_operator(policy: Policy, actor: str, action: str) -> None:
    """Only the policy's operators release, promote and set the policy."""
    if actor not in policy.roles.operators:
        raise AccessRefused("roles.operators", f"'{actor}' is not an operator, and only operators "
                            f"{action} (operators: {_listed(policy.roles.operators)}); run it "
                            f"--as an operator")


def require_reviewer(policy: Policy, reviewer: str) -> None:
    """When the policy lists reviewers, only they are declared and decide."""
    allowed = policy.roles.reviewers
    if allowed and reviewer not in allowed:
        raise AccessRefused("roles.reviewers", f"'{reviewer}' is not a reviewer the policy lists "
                            f"({_listed(allowed)}); an operator adds them with `flexo policy set`")


def require_contributor(policy: Policy, contributor: str) -> None:
    """When the policy lists contributors, only they publish modules."""
    allowed = policy.roles.contributors
    if allowed and contributor not in allowed:
        raise AccessRefused("roles.contributors", f"'{contributor}' is not a contributor the "
                            f"policy lists ({_listed(allowed)}); an operator adds it with "
                            f"`flexo policy set`")


def entitled_selection(policy: Policy, consumer: str, only: list[str] | None,
                       experts: list[str]) -> list[str] | None:
    """The `only` selection `consumer` may generate with, among a model's contributor
    `experts`: unchanged when the policy lists no consumers; otherwise the consumer must be
    listed, may name only experts it is entitled to, and by default gets exactly those."""
    consumers = policy.roles.consumers
    if not consumers:
        return only
    if consumer not in consumers:
        raise AccessRefused("roles.consumers", f"'{consumer}' is not a consumer the policy lists "
                            f"({_listed(sorted(consumers))}); generate --as a listed consumer")
    granted = consumers[consumer]
    entitled = list(experts) if "*" in granted else [e for e in experts if e in granted]
    refused = [e for e in only or [] if e in experts and e not in entitled]
    if refused:
        raise AccessRefused("roles.consumers", f"'{consumer}' is not entitled to "
                            f"{', '.join(refused)} (entitled: {_listed(entitled)})")
    return entitled if only is None else only


def consumer_for_key(policy: Policy, key: str) -> str | None:
    """The consumer an API key belongs to (`roles.consumer_keys`), or None for an unknown key;
    digests are compared in constant time."""
    digest = key_digest(key)
    for consumer, digests in policy.roles.consumer_keys.items():
        if any(hmac.compare_digest(digest, d) for d in digests):
            return consumer
    return None


def require_withdrawer(policy: Policy, contributor: str, actor: str) -> None:
    """Only the contributor itself or an operator withdraws a module."""
    if actor != contributor and actor not in policy.roles.operators:
        raise AccessRefused("roles.operators", f"'{actor}' may not withdraw {contributor}'s "
                            f"module: only {contributor} itself or an operator "
                            f"({_listed(policy.roles.operators)}) may; run it --as one of them")
