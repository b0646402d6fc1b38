"""`flexo infra users sync`: the policy's identities as MLflow users, with the permissions their
roles give (flows.infra.permissions), through MLflow's auth API as its admin.

Idempotent: a user that exists keeps its password; a permission that differs is replaced; the
registered models and experiments the grants name are created by the admin first, so no
participant owns (and could hand out) what belongs to another. What the policy no longer gives
is taken back: any non-admin user's permission on a `flexo-*` registered model or on flexo's
experiments that the plan lacks is revoked (a removed contributor, a reviewer stepped down); the
accounts stay (with `NO_PERMISSIONS` by default they see nothing of flexo's), and other users'
permissions on the server's other resources are not flexo's business. A new user's password is
generated here and written once, mode 0600, to `<credentials>/<user>.env`
(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) for the operator to hand over.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from components.atomic import atomic_write
from flows.infra.permissions import EXPERIMENTS, Grant, grants, identities, registered_models
from flows.settings import read_env_file
from flows.tracking.registry import model_names
from governance.policy import Policy

APP = "flexo-auth"  # the server's `--app-name`; its client is MLflow's AuthServiceClient


class Revoked(BaseModel):
    user: str
    kind: str
    name: str
    held: str  # the permission taken back


class SyncReport(BaseModel):
    created_users: list[str] = []
    existing_users: list[str] = []
    granted: list[Grant] = []  # grants that were missing or different
    revoked: list[Revoked] = []  # permissions the policy no longer gives
    unchanged: int = 0


def _exists(e: MlflowException) -> bool:
    return e.error_code == "RESOURCE_ALREADY_EXISTS"


def _ensure_resources(client: MlflowClient, policy: Policy) -> dict[str, str]:
    """Create the policy's registered models and flexo's experiments; experiment name -> id."""
    for name in registered_models(policy):
        try:
            client.create_registered_model(name)
        except MlflowException as e:
            if not _exists(e):
                raise
    ids = {}
    for name in EXPERIMENTS:
        found = client.get_experiment_by_name(name)
        ids[name] = found.experiment_id if found else client.create_experiment(name)
    return ids


def _write_credentials(directory: Path, user: str, password: str) -> Path:
    path = directory / f"{user}.env"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, f"MLFLOW_TRACKING_USERNAME={user}\nMLFLOW_TRACKING_PASSWORD={password}\n")
    path.chmod(0o600)
    return path


def sync(policy: Policy, tracking_uri: str, credentials: Path) -> SyncReport:
    """Bring the server's users and permissions to what `policy` gives; MLflow credentials of
    an admin are taken from the environment (MLFLOW_TRACKING_USERNAME / _PASSWORD)."""
    from mlflow.server import get_app_client

    auth = get_app_client(APP, tracking_uri=tracking_uri)
    client = MlflowClient(tracking_uri)
    ids = _ensure_resources(client, policy)
    models = model_names("flexo-", client)
    plan = grants(policy, models)
    report = SyncReport()
    for user in identities(policy):
        password = secrets.token_urlsafe(18)
        try:
            auth.create_user(user, password)
        except MlflowException as e:
            if not _exists(e):
                raise
            report.existing_users.append(user)
            continue
        _write_credentials(credentials, user, password)
        report.created_users.append(user)
    for grant in plan:
        resource = ids[grant.name] if grant.kind == "experiment" else grant.name
        held = auth.get_user_permission(grant.user, grant.kind, resource).permission
        if held == grant.permission:
            report.unchanged += 1
            continue
        if held != "NO_PERMISSIONS":
            auth.revoke_user_permission(grant.user, grant.kind, resource)
        auth.grant_user_permission(grant.user, grant.kind, resource, grant.permission)
        report.granted.append(grant)
    report.revoked = _revoke_the_rest(auth, plan, [("experiment", n, ids[n]) for n in EXPERIMENTS]
                                      + [("registered_model", m, m) for m in models])
    return report


def _revoke_the_rest(auth, plan: list[Grant],
                     resources: list[tuple[str, str, str]]) -> list[Revoked]:
    """Revoke every non-admin user's permission on flexo's `resources` (kind, name, id) that
    `plan` lacks."""
    from mlflow.server.auth.routes import LIST_USERS

    keep = {(g.user, g.kind, g.name) for g in plan}
    users = [u["username"] for u in auth._request(LIST_USERS, "GET")["users"]  # no public call
             if not u["is_admin"]]
    revoked = []
    for user in users:
        for kind, name, resource in resources:
            if (user, kind, name) in keep:
                continue
            held = auth.get_user_permission(user, kind, resource).permission
            if held != "NO_PERMISSIONS":
                auth.revoke_user_permission(user, kind, resource)
                revoked.append(Revoked(user=user, kind=kind, name=name, held=held))
    return revoked


def admin_environment(secrets_file: Path) -> dict[str, str]:
    """The local infra's admin credentials (infra/local/up.sh's secrets file), unless the
    environment names credentials already."""
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        return {}
    return {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD":
            read_env_file(secrets_file)["MLFLOW_AUTH_ADMIN_PASSWORD"]}
