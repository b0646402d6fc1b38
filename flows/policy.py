"""The governance policy in force in this home, and the role checks flows and commands make.

The policy in force is the file `FLEXO_POLICY` names, else `$FLEXO_HOME/policy.yaml` (what
`flexo policy set` writes), else the shipped `governance/policy.yaml`. A malformed one refuses
every command that reads it, naming the field. A role refusal is a ledger entry naming the rule,
then a one-line GovernanceError (exit 6).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from components.changed_file import ChangedFile
from components.errors import ConfigError
from flows import ledger
from flows.settings import flexo_home
from governance.access import AccessRefused, entitled_selection, require_operator
from governance.policy import (
    DEFAULT_POLICY,
    POLICY_FILE,
    Policy,
    PolicyError,
    load_policy,
    parse_policy,
    policy_digest,
)

POLICY_ENV = "FLEXO_POLICY"
T = TypeVar("T")


def policy_path() -> Path:
    """Where the policy in force lives."""
    if named := os.environ.get(POLICY_ENV):
        return Path(named).resolve()
    home = flexo_home() / POLICY_FILE
    return home if home.is_file() else DEFAULT_POLICY


_policies: ChangedFile[Policy] = ChangedFile(load_policy)


def policy_in_force() -> Policy:
    """The policy in force, parsed again only when its file changed (a server asks on every
    request; `set_policy` replaces the file, which changes its inode)."""
    try:
        return _policies(policy_path())
    except PolicyError as e:
        raise ConfigError(f"{e}; fix the file or set a valid one with `flexo policy set FILE`"
                          ) from None


def enforce(actor: str, subject: str, action: str, rule: Callable[[Policy], T],
            policy: Policy | None = None) -> T:
    """Apply a role `rule` of `policy` (default: the policy in force) to `actor`; a refusal
    goes on the ledger (naming the rule) and raises GovernanceError. Returns what the rule
    returns."""
    try:
        return rule(policy or policy_in_force())
    except AccessRefused as e:
        raise ledger.refuse(actor, subject, action, str(e), rule=e.rule) from None


def require_operator_for(actor: str, subject: str, action: str) -> None:
    """Only an operator of the policy in force may `action` (e.g. "release")."""
    enforce(actor, subject, action, lambda policy: require_operator(policy, actor, action))


def consumer_selection(consumer: str, subject: str, only: list[str] | None,
                       experts: list[str]) -> list[str] | None:
    """The experts `consumer` may generate with (`only`), by its entitlements in the policy
    in force; a listed consumer asking for an expert it is not entitled to is refused."""
    return enforce(consumer, subject, "generate",
                   lambda policy: entitled_selection(policy, consumer, only, experts))


class PolicyChange(BaseModel):
    path: Path
    old_sha256: str
    new_sha256: str


def set_policy(source: Path, actor: str) -> PolicyChange:
    """Make `source` this home's policy: `actor` must be an operator (of the policy in force; of
    the shipped default while the one in force is malformed), the file must validate whole;
    written atomically to `$FLEXO_HOME/policy.yaml`, the change on the ledger."""
    from components.atomic import atomic_write

    if os.environ.get(POLICY_ENV):
        raise ConfigError(f"{POLICY_ENV}={os.environ[POLICY_ENV]} names the policy in force, so "
                          f"a home policy would not be read; edit that file or unset "
                          f"{POLICY_ENV}")
    current = policy_path()
    old = current.read_text(encoding="utf-8")
    try:
        governing = parse_policy(old, current)
    except PolicyError:
        governing = load_policy(DEFAULT_POLICY)  # a broken file governs nothing
    enforce(actor, "policy", "policy set",
            lambda policy: require_operator(policy, actor, "set the policy"), governing)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read policy file {source} ({e.strerror}); give an existing "
                          f"YAML file") from None
    try:
        parse_policy(text, source)
    except PolicyError as e:
        raise ConfigError(f"{e}; nothing was changed") from None
    target = flexo_home() / POLICY_FILE
    atomic_write(target, text)
    change = PolicyChange(path=target, old_sha256=policy_digest(old),
                          new_sha256=policy_digest(text))
    ledger.record("policy-change", actor, "policy", source=str(Path(source).resolve()),
                  old_sha256=change.old_sha256, new_sha256=change.new_sha256)
    return change


def issue_key(consumer: str, actor: str) -> str:
    """A new API key for `consumer`: its digest joins `roles.consumer_keys` in this home's
    policy (comments and order kept; set like any policy change: operators only, on the
    ledger). The key itself is returned once and stored nowhere."""
    import io
    import secrets
    import tempfile

    from ruamel.yaml import YAML

    from governance.contributors import InvalidContributorId, validate_contributor_id
    from governance.policy import key_digest

    try:
        validate_contributor_id(consumer)
    except InvalidContributorId as e:
        raise ConfigError(str(e)) from None
    key = "flexo-" + secrets.token_urlsafe(32)
    yaml = YAML()
    doc = yaml.load(policy_path().read_text(encoding="utf-8")) or {}
    roles = doc.setdefault("roles", {})
    keys = roles.get("consumer_keys") or {}
    keys.setdefault(consumer, []).append(key_digest(key))
    roles["consumer_keys"] = keys
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / POLICY_FILE
        staged.write_text(buffer.getvalue(), encoding="utf-8")
        set_policy(staged, actor)
    return key
