"""`flexo infra events`: MLflow's registry webhooks in; flexo's rules and Prefect events out.

MLflow (3.3+) posts `model_version.created`, `model_version_tag.set` and
`model_version_alias.created` here, signed: `X-MLflow-Signature: v1,<base64 HMAC-SHA256 of
"<delivery id>.<timestamp>.<body>">` with the webhook's secret. A delivery whose signature fails,
or whose timestamp is more than five minutes off (a replay), is refused with 401/400 and nothing
is done; one seen before (MLflow retries with the same delivery id) is answered 200 and not
acted on again. A delivery that fails while being handled gets a 500, so MLflow delivers it
again. What it does:

- `production` moved to a release that may not be production -> put back
  (flows.infra.production_guard), on the ledger;
- an approval recorded in the registry by hand (`approval.<reviewer>`) -> settled against the
  policy once enough are there (flows.infra.approvals), `flexo.expert.approved` emitted;
- every delivery -> the Prefect event `mlflow.<entity>.<action>` about the registered model
  (`mlflow.model-version.flexo-expert-<id>`), its payload the delivery's data: ids, versions,
  tag keys and values, never text.

On start it registers its webhook on the server (or updates its URL and secret) and runs the
guard once: what happened while it was down is caught there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

TOLERANCE_S = 300
SEEN_MAX = 10_000

log = logging.getLogger(__name__)


class Delivery(BaseModel):
    """The body MLflow posts."""

    entity: str
    action: str
    timestamp: str
    data: dict[str, Any]


def expected_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_delivery(secret: str, headers: dict[str, str], body: bytes,
                   now: float | None = None) -> str | None:
    """Why a delivery is not MLflow's (None when it is): signature and freshness."""
    delivery_id = headers.get("x-mlflow-delivery-id", "")
    timestamp = headers.get("x-mlflow-timestamp", "")
    signature = headers.get("x-mlflow-signature", "")
    if not (delivery_id and timestamp and signature):
        return "missing X-MLflow-Delivery-Id, -Timestamp or -Signature"
    if not hmac.compare_digest(signature, expected_signature(secret, delivery_id, timestamp,
                                                             body)):
        return "signature does not match the webhook secret"
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return "timestamp is not a Unix time"
    if age > TOLERANCE_S:
        return f"timestamp is {age:.0f} s off (more than {TOLERANCE_S} s: a replay?)"
    return None


def handle(delivery: Delivery) -> dict[str, Any]:
    """Act on one delivery; what was done, for the response and the log."""
    from flows import events
    from flows.infra.approvals import approval_tag, settle
    from flows.infra.production_guard import guard_production
    from flows.tracking.registry import EXPERT_PREFIX, RELEASE_MODEL

    data = delivery.data
    done: dict[str, Any] = {}
    events.emit(f"mlflow.{delivery.entity.replace('_', '-')}.{delivery.action}",
                f"mlflow.{delivery.entity.replace('_', '-')}.{data.get('name', '')}",
                {k: v for k, v in data.items() if k in ("name", "version", "key", "value",
                                                         "alias", "run_id")})
    if (delivery.entity, delivery.action) == ("model_version_alias", "created") and \
            data.get("name") == RELEASE_MODEL and data.get("alias") == "production":
        revert = guard_production()
        if revert is not None:
            done["reverted"] = revert.model_dump(mode="json")
    if (delivery.entity, delivery.action) == ("model_version_tag", "set") and \
            (reviewer := approval_tag(data.get("name", ""), data.get("key", ""))):
        settled = settle(data["name"].removeprefix(EXPERT_PREFIX), int(data["version"]),
                         reviewer)
        if settled is not None:
            done["settled"] = settled.model_dump(mode="json")
    return done


def create_app(secret: str):
    """The receiver: `POST /mlflow` for webhooks, `GET /healthz`."""
    app = FastAPI(title="flexo events receiver")
    seen: OrderedDict[str, None] = OrderedDict()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/mlflow")
    async def mlflow_webhook(request: Request) -> JSONResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        refusal = check_delivery(secret, headers, body)
        if refusal is not None:
            log.warning("refused a delivery: %s", refusal)
            return JSONResponse({"error": refusal}, status_code=401)
        delivery_id = headers["x-mlflow-delivery-id"]
        if delivery_id in seen:
            return JSONResponse({"delivery": delivery_id, "duplicate": True})
        try:
            delivery = Delivery.model_validate(json.loads(body))
        except ValueError as e:
            return JSONResponse({"error": f"not an MLflow webhook body: {e}"}, status_code=400)
        try:
            done = handle(delivery)  # sync, in the event loop: one delivery at a time
        except Exception:
            log.exception("delivery %s failed; MLflow will retry it", delivery_id)
            return JSONResponse({"error": "handling failed; deliver again"}, status_code=500)
        seen[delivery_id] = None
        while len(seen) > SEEN_MAX:
            seen.popitem(last=False)
        log.info("delivery %s %s.%s %s: %s", delivery_id, delivery.entity, delivery.action,
                 delivery.data.get("name"), done or "nothing to do")
        return JSONResponse({"delivery": delivery_id, **done})

    return app
