"""The events receiver's webhook on the MLflow server (MLflow 3.3+ registry webhooks)."""

from __future__ import annotations

from mlflow import MlflowClient

WEBHOOK_NAME = "flexo-events"
EVENTS = ("model_version.created", "model_version_tag.set", "model_version_alias.created")


def register_webhook(url: str, secret: str) -> str:
    """The receiver's webhook on the server, created or brought up to date; its id."""
    client = MlflowClient()
    for hook in client.list_webhooks():
        if hook.name == WEBHOOK_NAME:
            client.update_webhook(hook.webhook_id, url=url, events=list(EVENTS), secret=secret,
                                  status="ACTIVE")
            return hook.webhook_id
    return client.create_webhook(WEBHOOK_NAME, url, list(EVENTS), secret=secret,
                                 description="flexo's registry rules and Prefect events "
                                             "(flexo infra events)").webhook_id
