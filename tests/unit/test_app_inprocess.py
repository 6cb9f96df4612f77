"""The in-process app (fixture `app`): the same routes, dependencies and error shapes as the
real server, without a subprocess. Small flows only; the real-server suite covers the rest."""

from __future__ import annotations

import uuid

from _support.inprocess import InProcessApp


def job_id() -> str:
    return f"u-{uuid.uuid4().hex}"


def test_health_needs_no_credentials(app: InProcessApp) -> None:
    resp = app.client.get("/healthz", headers={"X-API-Key": ""})
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    assert resp.json()["database"] == "sqlite"


def test_errors_have_the_one_body_shape(app: InProcessApp) -> None:
    anonymous = app.client.get("/api/training/jobs", headers={"X-API-Key": ""})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "unauthorized"
    bad_limit = app.client.get("/api/training/jobs", params={"limit": 0})
    assert bad_limit.status_code == 422
    error = bad_limit.json()["error"]
    assert error["type"] == "validation_error"
    assert error["details"][0]["loc"] == ["query", "limit"]


def test_scopes_are_enforced(app: InProcessApp) -> None:
    production_only = app.new_key("bob", "production")
    resp = app.client.get("/api/training/jobs", headers={"X-API-Key": production_only})
    assert resp.status_code == 403
    assert "'training'" in resp.json()["error"]["message"]
    assert app.client.get("/api/models", headers={"X-API-Key": production_only}).status_code == 200


def test_ingest_then_read_back(app: InProcessApp) -> None:
    jid = job_id()
    created = app.client.post("/api/training/jobs", json={"id": jid})
    assert created.status_code == 201
    token = created.json()["job_token"]
    rows = [
        {"epoch": e, "step": e * 10, "sample_index": i, "prompt": f"q{i}", "prediction": p,
         "ground_truth": "yes"}
        for e, p in [(0, "no"), (1, "yes")]
        for i in range(3)
    ]  # fmt: skip
    stored = app.client.post(
        f"/api/training/predictions/{jid}",
        json={"predictions": rows},
        headers={"X-API-Key": "", "Authorization": f"Bearer {token}"},
    )
    assert stored.json() == {"job_id": jid, "accepted": 6, "created": 6, "updated": 0}
    trends = app.client.get(f"/api/training/predictions/{jid}/trends").json()
    assert [t["avg_exact_match"] for t in trends["trends"]] == [0.0, 1.0]
    assert trends["overall_improvement"] == 100.0
    other = app.new_key("carol")
    hidden = app.client.get(f"/api/training/predictions/{jid}", headers={"X-API-Key": other})
    assert hidden.status_code == 404  # another user's job is unknown, never forbidden
