"""`mlflow server --app-name flexo-auth`: MLflow's basic-auth app plus the registry's review rules.

MLflow's permissions are per registered model and coarse (EDIT lets a user set any tag and move
any alias); governance.registry_rules says which tags and aliases each user may write. This app is
MLflow's own `create_app` with one more Flask before-request hook, registered after basic-auth's,
so it runs on an authenticated user; refusals are 403s in MLflow's error shape, so the client
raises them as `PERMISSION_DENIED` with the rule in the message. The registry then records, for
every review tag, that the user named in it is the one who wrote it.
"""

from __future__ import annotations

import json

from flask import Flask, Response, request
from mlflow.exceptions import MlflowException
from mlflow.server import app as mlflow_app
from mlflow.server.auth import (
    _get_registered_model_permission,
    _get_request_param,
    authenticate_request,
    sender_is_admin,
)
from mlflow.server.auth import create_app as create_basic_auth_app

from governance.registry_rules import alias_refusal, tag_refusal, version_refusal

SET_TAG = "/mlflow/model-versions/set-tag"
DELETE_TAG = "/mlflow/model-versions/delete-tag"
CREATE_VERSION = "/mlflow/model-versions/create"
ALIAS = "/mlflow/registered-models/alias"
CREATE_MODEL = "/mlflow/registered-models/create"
CREATE_EXPERIMENT = "/mlflow/experiments/create"


def _refused(message: str) -> Response:
    body = json.dumps({"error_code": "PERMISSION_DENIED", "message": message})
    return Response(body, status=403, mimetype="application/json")


def _refusal(user: str) -> str | None:
    """The rule a registry write breaks, for a user who does not manage its model; None when
    the request is not a registry write these rules govern."""
    path = request.path
    if path.endswith((CREATE_MODEL, CREATE_EXPERIMENT)):
        return _creation_refusal(user, path.endswith(CREATE_MODEL), _get_request_param("name"))
    if not path.endswith((SET_TAG, DELETE_TAG, CREATE_VERSION, ALIAS)):
        return None
    model = _get_request_param("name")
    if _get_registered_model_permission(model).can_manage:
        return None
    if path.endswith(ALIAS):
        return alias_refusal(user, model, _get_request_param("alias"))
    if path.endswith(CREATE_VERSION):
        body = request.get_json(silent=True) or {}
        tags = {t.get("key", ""): t.get("value", "") for t in body.get("tags") or []}
        return version_refusal(user, model, tags)
    value = _get_request_param("value") if path.endswith(SET_TAG) else ""
    return tag_refusal(user, model, _get_request_param("key"), value)


def _creation_refusal(user: str, registered_model: bool, name: str) -> str | None:
    """Only the admin creates registered models and experiments (`flexo infra users sync`
    does, for every role), so no participant owns, and could grant, what belongs to another;
    asking for one that exists is let through (MLflow answers RESOURCE_ALREADY_EXISTS, which
    flexo's get-or-create expects)."""
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    if registered_model:
        try:
            _get_model_registry_store().get_registered_model(name)
            return None
        except MlflowException:
            kind = "registered model"
    else:
        if _get_tracking_store().get_experiment_by_name(name) is not None:
            return None
        kind = "experiment"
    return (f"'{user}' may not create {kind} '{name}': on this server an admin creates them "
            f"(`flexo infra users sync` creates flexo's from the policy)")


def registry_rules() -> Response | None:
    """Flask before-request hook: runs after basic-auth's, so the user is authenticated (a 401
    was answered already) and MLflow's own permission check has passed."""
    if request.method not in ("POST", "DELETE") or not request.path.startswith(
            ("/api/", "/ajax-api/")):
        return None
    auth = authenticate_request()
    if not hasattr(auth, "username") or sender_is_admin():
        return None
    refusal = _refusal(auth.username)
    return _refused(refusal) if refusal else None


def create_app(app: Flask = mlflow_app):
    """The factory `mlflow server --app-name flexo-auth` loads (entry point `mlflow.app`)."""
    served = create_basic_auth_app(app)
    app.before_request(registry_rules)
    return served
