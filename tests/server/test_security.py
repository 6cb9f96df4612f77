"""Security promises (issue 7, SECURITY.md): rate limits, expiry, no timing oracle, CORS off by
default, headers, and secrets that never appear in answers or logs."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from _support.appserver import ServerHandle
from _support.infra import MakeServer
from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import sessions
from finetune_lab.server.services.tokens import hash_secret, utcnow

from ._helpers import JOBS, PRED, assert_error, new_id, row


@pytest.fixture
def limited(make_server: MakeServer) -> ServerHandle:
    return make_server("sqlite", extra_env={"FINETUNE_LAB_RATE_LIMIT": "8/minute"})


def test_rate_limit_is_per_key_with_retry_after(limited: ServerHandle) -> None:
    alice, bob = limited.create_key("alice"), limited.create_key("bob")
    with limited.client(alice) as a, limited.client(bob) as b:
        assert [a.get(JOBS).status_code for _ in range(8)] == [200] * 8
        refused = a.get(JOBS)
        error = assert_error(refused, 429, "rate_limited")
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 60 and "rate limit" in error["message"]
        # Sessions spend their key's budget; another key has its own.
        session = a.post("/api/auth/session", json={"ttl_seconds": 60})
        assert_error(session, 429, "rate_limited")
        assert b.get(JOBS).status_code == 200
        # Bad credentials are refused before counting: they never spend anyone's budget.
        assert_error(httpx.get(limited.base_url + JOBS, headers={"X-API-Key": "flk_nope"}), 401)


def test_job_tokens_spend_their_keys_budget(limited: ServerHandle) -> None:
    key = limited.create_key("carol")
    with limited.client(key) as http:
        job = http.post(JOBS, json={"id": new_id()}).json()  # 1 of the key's 8
        token = {"Authorization": f"Bearer {job['job_token']}"}
        with httpx.Client(base_url=limited.base_url, headers=token) as writer:
            codes = [
                writer.post(f"{PRED}/{job['id']}", json={"predictions": [row(1, i, 0)]})
                for i in range(8)
            ]
        assert [r.status_code for r in codes] == [200] * 7 + [429]
        assert_error(codes[-1], 429, "rate_limited")
        # The token spent the key's budget: the key itself is now over it too.
        assert_error(http.get(JOBS), 429, "rate_limited")


def test_rate_limit_can_be_turned_off(make_server: MakeServer) -> None:
    server = make_server("sqlite", extra_env={"FINETUNE_LAB_RATE_LIMIT": "off"})
    with server.client(server.create_key("dave")) as http:
        assert {http.get("/api/auth/whoami").status_code for _ in range(30)} == {200}


def test_expired_session_is_401(server: ServerHandle, api_key: str) -> None:
    with server.client(api_key) as http:
        token = http.post("/api/auth/session", json={"ttl_seconds": 60}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(server.base_url + "/api/auth/whoami", headers=bearer).status_code == 200
    db = Database(server.database_url)  # let the clock pass its expiry
    try:
        with db.write() as conn:
            conn.execute(
                update(sessions)
                .where(sessions.c.token_hash == hash_secret(token))
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        db.dispose()
    assert_error(httpx.get(server.base_url + "/api/auth/whoami", headers=bearer), 401)


def test_no_timing_oracle_in_key_checks(sqlite_server: ServerHandle, api_key: str) -> None:
    """A guess sharing 40 characters with a real key costs what a random guess costs: the
    server looks secrets up by SHA-256, never comparing them character by character."""
    near = api_key[:-3] + ("AAA" if not api_key.endswith("AAA") else "BBB")
    far = "flk_" + "Z" * 43
    timings: dict[str, list[float]] = {"near": [], "far": []}
    with httpx.Client(base_url=sqlite_server.base_url) as http:
        for _ in range(5):  # warm-up
            http.get("/api/auth/whoami", headers={"X-API-Key": far})
        for _ in range(150):
            for name, guess in (("near", near), ("far", far)):
                began = time.perf_counter()
                status = http.get("/api/auth/whoami", headers={"X-API-Key": guess}).status_code
                timings[name].append(time.perf_counter() - began)
                assert status == 401
    near_median, far_median = (statistics.median(timings[k]) for k in ("near", "far"))
    spread = statistics.quantiles(timings["far"], n=4)
    iqr = spread[2] - spread[0]
    assert abs(near_median - far_median) <= max(iqr, 0.0005), (near_median, far_median, iqr)


def test_cors_is_off_by_default(server: ServerHandle, api_key: str) -> None:
    origin = {"Origin": "https://evil.example"}
    with server.client(api_key) as http:
        answer = http.get(JOBS, headers=origin)
        preflight = http.options(JOBS, headers={**origin, "Access-Control-Request-Method": "GET"})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_only_configured_origins(make_server: MakeServer) -> None:
    server = make_server(
        "sqlite", extra_env={"FINETUNE_LAB_CORS_ORIGINS": "https://lab.example.com"}
    )
    key = server.create_key("erin")
    with server.client(key) as http:
        good = http.get(JOBS, headers={"Origin": "https://lab.example.com"})
        bad = http.get(JOBS, headers={"Origin": "https://evil.example"})
    assert good.headers["access-control-allow-origin"] == "https://lab.example.com"
    assert "access-control-allow-origin" not in bad.headers


def test_cors_carries_w3c_trace_context(make_server: MakeServer) -> None:
    """A browser app may send `traceparent` to predict and read the `traceresponse` answer."""
    origin = "https://lab.example.com"
    server = make_server("sqlite", extra_env={"FINETUNE_LAB_CORS_ORIGINS": origin})
    key = server.create_key("frank")
    chat = "/v1/chat/completions"
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    with server.client(key) as http:
        preflight = http.options(
            chat,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,traceparent,x-api-key",
            },
        )
        answer = http.post(
            chat,
            headers={"Origin": origin, "traceparent": parent},
            json={
                "model": "nobody-registered-this",
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
    assert preflight.status_code == 200, preflight.text
    assert "traceparent" in preflight.headers["access-control-allow-headers"].lower()
    assert answer.status_code == 404  # an unknown model: still a span, named in the answer
    assert answer.headers["traceresponse"].startswith("00-" + "ab" * 16 + "-")
    exposed = answer.headers["access-control-expose-headers"].lower()
    assert "traceresponse" in exposed.split(", ")


def test_security_headers(server: ServerHandle, api_key: str) -> None:
    with server.client(api_key) as http:
        api = http.get(JOBS)
        page = http.get("/")
    assert api.headers["cache-control"] == "no-store"
    assert api.headers["x-content-type-options"] == "nosniff"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"


def test_secrets_never_returned_or_logged(make_server: MakeServer) -> None:
    server = make_server("sqlite", extra_env={"FINETUNE_LAB_LOG_LEVEL": "debug"})
    key = server.create_key("frank")
    listing = server.cli("keys", "list", "--database-url", server.database_url, "--json")
    assert listing.returncode == 0 and key not in listing.stdout
    secrets = [key]
    with server.client(key) as http:
        job = http.post(JOBS, json={"id": new_id()}).json()
        secrets.append(job["job_token"])
        assert http.get(f"{JOBS}/{job['id']}").json()["job_token"] is None
        session = http.post("/api/auth/session", json={"ttl_seconds": 60}).json()["token"]
        secrets.append(session)
        model = http.post(
            "/api/models",
            json={
                "name": "remote",
                "kind": "openai",
                "base_url": "http://127.0.0.1:9/v1",
                "upstream_model": "m",
                "api_key": "sk-very-secret-upstream",
            },
        )
        assert model.status_code == 201, model.text
        secrets.append("sk-very-secret-upstream")
        listed = http.get("/api/models")
        one = http.get(f"/api/models/{model.json()['id']}")
        for answer in (model, listed, one):
            assert answer.status_code in (200, 201) and "sk-very-secret-upstream" not in answer.text
        # Failed attempts with secrets must not echo them either.
        wrong = http.get(JOBS, headers={"X-API-Key": key + "x"})
        assert key not in wrong.text
        http.post(
            "/api/v1/predict",
            json={"model": "remote", "messages": [{"role": "user", "content": "hi"}]},
        )
    server.stop()
    log = server.log_path.read_text(errors="replace")
    assert log, "the server wrote no log at all"
    for secret in secrets:
        assert secret not in log
