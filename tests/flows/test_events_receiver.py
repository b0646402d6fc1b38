"""The events receiver's door (issue 17): only MLflow's signed, fresh deliveries get in. The
signatures are made by MLflow's own delivery code, so a change on either side fails here."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient
from mlflow.webhooks.delivery import _generate_hmac_signature

from flows.infra.events_receiver import check_delivery, create_app

SECRET = "a-webhook-secret-of-some-length"
BODY = json.dumps({"entity": "model_version_alias", "action": "created",
                   "timestamp": "2026-12-02T07:00:00+00:00",
                   "data": {"name": "flexo-release", "alias": "production", "version": "3"}})


def _headers(secret: str = SECRET, body: str = BODY, at: float | None = None,
             delivery: str = "d-1") -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {"x-mlflow-delivery-id": delivery, "x-mlflow-timestamp": stamp,
            "x-mlflow-signature": _generate_hmac_signature(secret, delivery, stamp, body)}


def test_a_delivery_signed_by_mlflow_passes_and_any_change_fails():
    assert check_delivery(SECRET, _headers(), BODY.encode()) is None
    tampered = BODY.replace('"3"', '"4"').encode()
    assert "signature" in check_delivery(SECRET, _headers(), tampered)
    assert "signature" in check_delivery(SECRET, _headers(secret="another-secret-entirely"),
                                         BODY.encode())
    moved = _headers() | {"x-mlflow-delivery-id": "d-2"}  # the id is signed too
    assert "signature" in check_delivery(SECRET, moved, BODY.encode())


def test_an_old_or_unsigned_delivery_is_refused():
    stale = _headers(at=time.time() - 3600)
    assert "replay" in check_delivery(SECRET, stale, BODY.encode())
    unsigned = {k: v for k, v in _headers().items() if k != "x-mlflow-signature"}
    assert "missing" in check_delivery(SECRET, unsigned, BODY.encode())


def test_the_receiver_answers_401_to_a_forged_delivery_and_400_to_a_signed_non_webhook():
    client = TestClient(create_app(SECRET))
    assert client.get("/healthz").json() == {"status": "ok"}
    forged = client.post("/mlflow", content=BODY, headers=_headers(secret="not-the-secret-x"))
    assert forged.status_code == 401 and "signature" in forged.json()["error"]
    body = json.dumps({"hello": "world"})
    odd = client.post("/mlflow", content=body, headers=_headers(body=body))
    assert odd.status_code == 400


def test_an_approval_made_in_the_registry_is_its_bare_key_on_an_expert_model():
    from flows.infra.approvals import approval_tag
    from governance.tags import ApprovalTags

    assert approval_tag("flexo-expert-beta", "approval.rev-one") == "rev-one"
    assert approval_tag("flexo-expert-beta", "approval.rev-one.note") is None  # not the last
    assert approval_tag("flexo-release", "approval.rev-one") is None
    assert approval_tag("flexo-expert-beta", "approval_status") is None
    # a hand-made approval (its time only) reads as a human reviewer's
    (approval,) = ApprovalTags.keyed({"approval.rev-one": "2026-12-02T08:00:00Z"}).values()
    assert (approval.reviewer, approval.reviewer_kind) == ("rev-one", "human")
