"""The MLflow permissions each role of the policy gets on a server (issue 17), as data.

`default_permission = NO_PERMISSIONS`: a user sees only what is granted here. Registered models:
a contributor edits its own `flexo-expert-<id>` (publishes, withdraws) and `flexo-release`
(answers releases: the server's registry rules let it write only its own acceptance); reviewers
edit every expert model (the rules let them write only their own reviews); operators manage the
anchor, the releases and every expert; consumers read the releases. Experiments follow the flows
each role runs. MLflow grants per experiment, not per run: contributors who log runs into one
experiment can edit each other's runs there (the registry, where decisions live, is per model).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from flows.accept import EXPERIMENT as ACCEPT
from flows.anchor import EXPERIMENT as ANCHOR_RUNS
from flows.contribute import EXPERIMENT as CONTRIBUTE
from flows.release import EXPERIMENT as RELEASE_RUNS
from flows.tracking.registry import ANCHOR_MODEL, RELEASE_MODEL, expert_model
from flows.withdraw import EXPERIMENT as WITHDRAW
from governance.policy import Policy

Kind = Literal["registered_model", "experiment"]
Level = Literal["READ", "EDIT", "MANAGE"]
EXPERIMENTS = (ANCHOR_RUNS, CONTRIBUTE, ACCEPT, RELEASE_RUNS, WITHDRAW)


class Grant(BaseModel):
    model_config = ConfigDict(frozen=True)

    user: str
    kind: Kind
    name: str  # the registered model's or experiment's name
    permission: Level


def identities(policy: Policy) -> list[str]:
    """Every user the policy names, each once, sorted."""
    roles = policy.roles
    return sorted({*roles.operators, *roles.reviewers, *roles.contributors, *roles.consumers})


def registered_models(policy: Policy) -> list[str]:
    """The models a server holds before anyone publishes: the anchor, the releases and one
    expert model per listed contributor (created by the admin, so no one else owns them)."""
    return [ANCHOR_MODEL, RELEASE_MODEL, *(expert_model(c) for c in policy.roles.contributors)]


def grants(policy: Policy, held_models: list[str] | tuple[str, ...] = ()) -> list[Grant]:
    """What each identity may do, highest permission per (user, resource). Operators manage
    `held_models` too: flexo's models the server already holds, a removed contributor's among
    them (its versions are still theirs to withdraw)."""
    roles = policy.roles
    experts = [expert_model(c) for c in roles.contributors]
    plan: dict[tuple[str, Kind, str], Level] = {}
    order = {"READ": 0, "EDIT": 1, "MANAGE": 2}

    def give(user: str, kind: Kind, names: list[str] | tuple[str, ...], level: Level) -> None:
        for name in names:
            key = (user, kind, name)
            if key not in plan or order[level] > order[plan[key]]:
                plan[key] = level

    for user in roles.operators:
        give(user, "registered_model", [*registered_models(policy), *held_models], "MANAGE")
        give(user, "experiment", EXPERIMENTS, "MANAGE")
    for user in roles.contributors:
        give(user, "registered_model", [expert_model(user), RELEASE_MODEL], "EDIT")
        give(user, "registered_model", [ANCHOR_MODEL], "READ")
        give(user, "experiment", [CONTRIBUTE, ACCEPT], "EDIT")
        give(user, "experiment", [ANCHOR_RUNS, RELEASE_RUNS], "READ")
    for user in roles.reviewers:
        give(user, "registered_model", experts, "EDIT")
        give(user, "experiment", [CONTRIBUTE], "READ")
    for user in roles.consumers:
        give(user, "registered_model", [RELEASE_MODEL], "READ")
        give(user, "experiment", [RELEASE_RUNS], "READ")
    return [Grant(user=u, kind=k, name=n, permission=p) for (u, k, n), p in sorted(plan.items())]
