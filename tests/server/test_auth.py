"""Credentials: API keys (two headers), scopes, session tokens, revocation, job tokens, users."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from ._helpers import JOBS, PRED, assert_error, create_job, fetch_all, ingest, new_id, row

SESSION = "/api/auth/session"
WHOAMI = "/api/auth/whoami"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cli_key(server, user: str, scopes: str = "all") -> dict:
    """`keys create --json` through the CLI: {key, user, scopes, prefix, id}."""
    name = f"{user}-{uuid.uuid4().hex[:8]}"
    res = server.cli(
        "keys",
        "create",
        "--user",
        user,
        "--name",
        name,
        "--scopes",
        scopes,
        "--database-url",
        server.database_url,
        "--json",
    )
    assert res.returncode == 0, res.stderr + res.stdout
    for line in reversed(res.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            data = json.loads(line)
            break
    else:
        data = json.loads(res.stdout)
    assert data["key"].startswith("flk_")
    assert {"key", "user", "scopes", "prefix", "id"} <= set(data), data
    return data


def revoke(server, prefix_or_id: str) -> None:
    res = server.cli("keys", "revoke", str(prefix_or_id), "--database-url", server.database_url)
    assert res.returncode == 0, res.stderr + res.stdout


@pytest.fixture
def anon(server):
    with server.client(None) as client:
        yield client


# --- API keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", JOBS),
        ("POST", JOBS),
        ("GET", f"{JOBS}/x"),
        ("PATCH", f"{JOBS}/x"),
        ("DELETE", f"{JOBS}/x"),
        ("GET", f"{PRED}/x"),
        ("POST", f"{PRED}/x"),
        ("GET", f"{PRED}/x/epochs"),
        ("GET", f"{PRED}/x/trends"),
        ("GET", f"{PRED}/x/samples/0"),
        ("GET", f"{PRED}/x/compare?from_epoch=0&to_epoch=1"),
        ("GET", f"{PRED}/x/export"),
        ("GET", WHOAMI),
        ("POST", SESSION),
    ],
)
def test_no_credentials_is_401(anon, method, path):
    kwargs: dict = {}
    if method in ("POST", "PATCH"):
        kwargs["json"] = {"predictions": []} if path.startswith(PRED) else {}
    assert_error(anon.request(method, path, **kwargs), 401)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "flk_" + "A" * 43},
        {"X-API-Key": "not-a-key"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer flk_" + "B" * 43},
        {"Authorization": "Bearer fls_doesnotexist"},
        {"Authorization": "Bearer fjt_doesnotexist"},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic YWxpY2U6cGFzcw=="},
        {"Authorization": "garbage"},
    ],
)
def test_bad_credentials_are_401(anon, headers):
    assert_error(anon.get(JOBS, headers=headers), 401)


def test_key_with_a_wrong_character_is_401(anon, api_key):
    tampered = api_key[:-1] + ("A" if api_key[-1] != "A" else "B")
    assert_error(anon.get(JOBS, headers={"X-API-Key": tampered}), 401)
    assert_error(anon.get(JOBS, headers={"X-API-Key": api_key + "x"}), 401)


def test_key_format(api_key):
    assert api_key.startswith("flk_")
    assert len(api_key) == 4 + 43
    assert set(api_key[4:]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_x_api_key_and_bearer_both_work(anon, api_key):
    assert anon.get(JOBS, headers={"X-API-Key": api_key}).status_code == 200
    assert anon.get(JOBS, headers=bearer(api_key)).status_code == 200


def test_whoami_with_api_key(anon, api_key):
    resp = anon.get(WHOAMI, headers={"X-API-Key": api_key})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user"] == "alice"
    assert body["credential"] == "api_key"
    assert "all" in body["scopes"]
    assert body.get("job_id") is None


@pytest.mark.parametrize("scopes", ["production", "testing", "production,testing"])
def test_missing_training_scope_is_403(server, http, scopes):
    job_id = new_id()
    create_job(http, job_id)
    ingest(http, job_id, [row(0, 0, 0)])
    key = server.create_key("alice", scopes=scopes)
    with server.client(key) as limited:
        assert_error(limited.get(JOBS), 403)
        assert_error(limited.post(JOBS, json={}), 403)
        assert_error(limited.get(f"{JOBS}/{job_id}"), 403)
        assert_error(limited.patch(f"{JOBS}/{job_id}", json={"status": "failed"}), 403)
        assert_error(limited.delete(f"{JOBS}/{job_id}"), 403)
        assert_error(limited.get(f"{PRED}/{job_id}"), 403)
        assert_error(limited.post(f"{PRED}/{job_id}", json={"predictions": [row(0, 0, 1)]}), 403)
        assert_error(limited.get(f"{PRED}/{job_id}/trends"), 403)
        assert_error(limited.get(f"{PRED}/{job_id}/export"), 403)
    # nothing changed
    job = http.get(f"{JOBS}/{job_id}").json()
    assert job["status"] != "failed"
    assert [p["sample_index"] for p in fetch_all(http, job_id)] == [0]


@pytest.mark.parametrize("scopes", ["training", "training,production", "all"])
def test_training_scope_is_enough(server, scopes):
    key = server.create_key("alice", scopes=scopes)
    with server.client(key) as client:
        job = create_job(client, new_id())
        ingest(client, job["id"], [row(0, 0, 0)])
        assert client.get(f"{PRED}/{job['id']}").status_code == 200


# --- session tokens --------------------------------------------------------------------------


def test_session_token_works_and_carries_user_and_scopes(anon, api_key):
    resp = anon.post(SESSION, headers={"X-API-Key": api_key})
    assert resp.status_code == 201, resp.text
    session = resp.json()
    assert session["token"].startswith("fls_")
    assert session["token_type"] == "bearer"
    assert session["user"] == "alice"
    assert "all" in session["scopes"]
    expires = datetime.fromisoformat(session["expires_at"].replace("Z", "+00:00"))
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    delta = expires - datetime.now(timezone.utc)
    assert timedelta(minutes=55) < delta <= timedelta(minutes=61)

    headers = bearer(session["token"])
    me = anon.get(WHOAMI, headers=headers)
    assert me.status_code == 200
    assert me.json()["credential"] == "session"
    assert me.json()["user"] == "alice"
    with httpx.Client(base_url=str(anon.base_url), headers=headers) as client:
        job = create_job(client, new_id())
        ingest(client, job["id"], [row(0, 0, 0)])
        assert client.get(f"{JOBS}/{job['id']}").status_code == 200


def test_session_ttl(anon, api_key):
    resp = anon.post(SESSION, headers={"X-API-Key": api_key}, json={"ttl_seconds": 60})
    assert resp.status_code == 201, resp.text
    expires = datetime.fromisoformat(resp.json()["expires_at"].replace("Z", "+00:00"))
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)
    delta = expires - datetime.now(timezone.utc)
    assert timedelta(seconds=30) < delta <= timedelta(seconds=65)


@pytest.mark.parametrize(
    "body", [{"ttl_seconds": 59}, {"ttl_seconds": 86_401}, {"ttl_seconds": "long"}, {"ttl": 100}]
)
def test_session_bad_ttl_is_422(anon, api_key, body):
    assert_error(anon.post(SESSION, headers={"X-API-Key": api_key}, json=body), 422)


def test_session_token_carries_limited_scopes(server, anon):
    key = server.create_key("alice", scopes="production")
    resp = anon.post(SESSION, headers={"X-API-Key": key})
    assert resp.status_code == 201, resp.text
    assert resp.json()["scopes"] == ["production"]
    token = resp.json()["token"]
    assert_error(anon.get(JOBS, headers=bearer(token)), 403)
    assert anon.get(WHOAMI, headers=bearer(token)).json()["scopes"] == ["production"]


def test_session_token_cannot_mint_sessions(anon, api_key):
    token = anon.post(SESSION, headers={"X-API-Key": api_key}).json()["token"]
    resp = anon.post(SESSION, headers=bearer(token))
    assert resp.status_code in (401, 403), resp.text
    assert_error(resp, resp.status_code)


# --- revocation ------------------------------------------------------------------------------


def test_revoked_key_is_401_at_once_by_prefix(server, anon):
    created = cli_key(server, "alice")
    key = created["key"]
    assert anon.get(JOBS, headers={"X-API-Key": key}).status_code == 200
    revoke(server, created["prefix"])
    assert_error(anon.get(JOBS, headers={"X-API-Key": key}), 401)
    assert_error(anon.get(JOBS, headers=bearer(key)), 401)


def test_revoked_key_is_401_at_once_by_id_and_ends_its_sessions(server, anon):
    created = cli_key(server, "alice")
    key = created["key"]
    token = anon.post(SESSION, headers={"X-API-Key": key}).json()["token"]
    assert anon.get(JOBS, headers=bearer(token)).status_code == 200
    revoke(server, str(created["id"]))
    assert_error(anon.get(JOBS, headers={"X-API-Key": key}), 401)
    assert_error(anon.get(JOBS, headers=bearer(token)), 401)
    assert_error(anon.post(SESSION, headers={"X-API-Key": key}), 401)


def test_revoking_one_key_leaves_others(server, anon, api_key):
    created = cli_key(server, "alice")
    revoke(server, created["prefix"])
    assert anon.get(JOBS, headers={"X-API-Key": api_key}).status_code == 200


# --- job tokens ------------------------------------------------------------------------------


def test_job_token_writes_only_its_own_job(http, anon):
    job = create_job(http, new_id())
    other = create_job(http, new_id())
    token = job["job_token"]
    assert token.startswith("fjt_")
    headers = bearer(token)
    job_id, other_id = job["id"], other["id"]

    resp = anon.post(f"{PRED}/{job_id}", headers=headers, json={"predictions": [row(0, 0, 0)]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["created"] == 1

    # every other operation is forbidden
    assert_error(
        anon.post(f"{PRED}/{other_id}", headers=headers, json={"predictions": [row(0, 0, 0)]}), 403
    )
    for method, path in [
        ("GET", f"{PRED}/{job_id}"),
        ("GET", f"{PRED}/{job_id}/epochs"),
        ("GET", f"{PRED}/{job_id}/trends"),
        ("GET", f"{PRED}/{job_id}/samples/0"),
        ("GET", f"{PRED}/{job_id}/export"),
        ("GET", f"{JOBS}/{job_id}"),
        ("GET", JOBS),
        ("DELETE", f"{JOBS}/{job_id}"),
        ("GET", f"{PRED}/{other_id}"),
    ]:
        assert_error(anon.request(method, path, headers=headers), 403)
    assert_error(anon.patch(f"{JOBS}/{job_id}", headers=headers, json={"status": "failed"}), 403)
    assert_error(anon.post(JOBS, headers=headers, json={}), 403)
    assert_error(anon.post(SESSION, headers=headers), 403)

    # nothing leaked into the other job, the job itself is intact
    assert fetch_all(http, other_id) == []
    assert http.get(f"{JOBS}/{job_id}").json()["status"] != "failed"
    assert len(fetch_all(http, job_id)) == 1


def test_job_token_via_x_api_key_header_is_not_an_api_key(http, anon):
    job = create_job(http, new_id())
    resp = anon.get(JOBS, headers={"X-API-Key": job["job_token"]})
    assert resp.status_code in (401, 403)
    assert_error(resp, resp.status_code)


def test_job_token_survives_resume(http, anon):
    job_id = new_id()
    token = create_job(http, job_id)["job_token"]
    resumed = create_job(http, job_id, expect=200)
    assert resumed["job_token"] is None
    resp = anon.post(
        f"{PRED}/{job_id}", headers=bearer(token), json={"predictions": [row(0, 0, 0)]}
    )
    assert resp.status_code == 200, resp.text


def test_job_token_of_deleted_job_cannot_write(http, anon):
    job = create_job(http, new_id())
    assert http.delete(f"{JOBS}/{job['id']}").status_code == 200
    resp = anon.post(
        f"{PRED}/{job['id']}",
        headers=bearer(job["job_token"]),
        json={"predictions": [row(0, 0, 0)]},
    )
    assert resp.status_code in (401, 403, 404), resp.text
    assert_error(resp, resp.status_code)


# --- user isolation ------------------------------------------------------------------------


@pytest.fixture
def bob(server):
    with server.client(server.create_key("bob")) as client:
        yield client


def test_bob_gets_404_for_alice_job_everywhere(http, bob):
    job_id = new_id()
    create_job(http, job_id, name="alice's")
    ingest(http, job_id, [row(0, 0, 0), row(1, 10, 0)])

    for method, path in [
        ("GET", f"{JOBS}/{job_id}"),
        ("DELETE", f"{JOBS}/{job_id}"),
        ("GET", f"{PRED}/{job_id}"),
        ("GET", f"{PRED}/{job_id}/epochs"),
        ("GET", f"{PRED}/{job_id}/trends"),
        ("GET", f"{PRED}/{job_id}/trends?group_by=step"),
        ("GET", f"{PRED}/{job_id}/samples/0"),
        ("GET", f"{PRED}/{job_id}/compare?from_epoch=0&to_epoch=1"),
        ("GET", f"{PRED}/{job_id}/export?format=jsonl"),
        ("GET", f"{PRED}/{job_id}/export?format=csv"),
    ]:
        resp = bob.request(method, path)
        assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
        assert_error(resp, 404)
    assert_error(bob.patch(f"{JOBS}/{job_id}", json={"name": "bob's"}), 404)
    assert_error(bob.post(f"{PRED}/{job_id}", json={"predictions": [row(0, 0, 1)]}), 404)
    with bob.stream("GET", f"{PRED}/{job_id}/stream", timeout=10) as resp:
        assert resp.status_code == 404
        resp.read()
        assert_error(resp, 404)

    # indistinguishable from a job that does not exist
    missing = bob.get(f"{JOBS}/{new_id('nobody')}")
    assert missing.json()["error"]["type"] == bob.get(f"{JOBS}/{job_id}").json()["error"]["type"]

    # alice's job is untouched
    job = http.get(f"{JOBS}/{job_id}").json()
    assert job["name"] == "alice's"
    assert [(p["epoch"], p["sample_index"]) for p in fetch_all(http, job_id)] == [(0, 0), (1, 0)]


def test_bob_does_not_see_alice_jobs_in_list(http, bob):
    job_id = new_id()
    create_job(http, job_id)
    ids = set()
    offset = 0
    while True:
        page = bob.get(JOBS, params={"limit": 1000, "offset": offset}).json()
        ids |= {j["id"] for j in page["jobs"]}
        offset += len(page["jobs"])
        if not page["jobs"] or offset >= page["total"]:
            break
    assert job_id not in ids


def test_bob_creating_alice_job_id_is_409(http, bob):
    job_id = new_id()
    create_job(http, job_id, name="alice's")
    assert_error(bob.post(JOBS, json={"id": job_id}), 409)
    assert_error(bob.post(JOBS, json={"id": job_id, "name": "bob's"}), 409)
    assert http.get(f"{JOBS}/{job_id}").json()["name"] == "alice's"


def test_bob_job_token_cannot_write_alice_job(http, bob):
    alice_job = create_job(http, new_id())
    bob_job = create_job(bob, new_id())
    with httpx.Client(base_url=str(bob.base_url), headers=bearer(bob_job["job_token"])) as tok:
        resp = tok.post(f"{PRED}/{alice_job['id']}", json={"predictions": [row(0, 0, 0)]})
    assert resp.status_code in (403, 404), resp.text
    assert_error(resp, resp.status_code)
    assert fetch_all(http, alice_job["id"]) == []
