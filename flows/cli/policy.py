"""`flexo policy show|set`: the governance policy in force in this home."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import command, err, out, sub_app
from flows.cli.options import OperatorOpt

group = sub_app("policy", "The governance policy: roles, approvals, module gates, licences.")


@command(group, log=None)
def show() -> None:
    """The policy in force (validated), where it lives and its sha256."""
    from flows.policy import policy_in_force, policy_path
    from governance.policy import policy_digest

    policy_in_force()  # a malformed policy is refused, not shown as governing
    path = policy_path()
    text = path.read_text(encoding="utf-8")
    out.print(f"# policy in force: {path}\n# sha256 {policy_digest(text)}", highlight=False,
              soft_wrap=True)
    out.print(text, highlight=False, markup=False, soft_wrap=True, end="")


@command(group, "set", log=None)
def set_(
    file: Annotated[Path, typer.Argument(help="The new policy (YAML), validated whole.")],
    actor: OperatorOpt = "operator",
) -> None:
    """Make FILE this home's policy ($FLEXO_HOME/policy.yaml); operators only, on the ledger."""
    from flows.policy import set_policy

    change = set_policy(file, actor)
    out.print(f"policy set: {change.path} (sha256 {change.old_sha256[:12]} -> "
              f"{change.new_sha256[:12]}), recorded on the ledger", highlight=False)


@command(group, log=None)
def key(
    consumer: Annotated[str, typer.Option(help="The consumer the key identifies (the policy's "
                                          "roles.consumers entitles it to experts).")],
    actor: OperatorOpt = "operator",
) -> None:
    """A new API key for CONSUMER (for `flexo serve`): printed once, only its sha256 is kept in
    the policy; operators only, on the ledger."""
    from flows.policy import issue_key

    out.print(issue_key(consumer, actor), highlight=False, soft_wrap=True)  # alone on stdout
    err.print(f"[dim]API key for {consumer}: shown once, keep it secret; its sha256 is in the "
              f"policy's roles.consumer_keys, the change on the ledger[/dim]", highlight=False)
