"""Job tokens are bound to the API key that made them (issue item 8): revoking the key ends
them; they can be rotated or revoked on their own; jobs from before migration 0004 follow the
documented rule."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from _support.appserver import Backend, ServerHandle
from _support.infra import MakeServer
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.tables import api_keys, jobs, users
from finetune_lab.server.services.tokens import (
    API_KEY_PREFIX,
    JOB_TOKEN_PREFIX,
    hash_secret,
    new_secret,
    utcnow,
)

from ._helpers import JOBS, PRED, assert_error, new_id, row

WHOAMI = "/api/auth/whoami"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write(server: ServerHandle, token: str, job_id: str, step: int = 0) -> httpx.Response:
    body = {"predictions": [row(1, step, 0)]}
    return httpx.post(f"{server.base_url}{PRED}/{job_id}", json=body, headers=bearer(token))


def revoke_key(server: ServerHandle, key: str) -> None:
    res = server.cli("keys", "revoke", key[:12], "--database-url", server.database_url)
    assert res.returncode == 0, res.stderr + res.stdout


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def make_job(server: ServerHandle, key: str) -> tuple[str, str]:
    with server.client(key) as http:
        job = http.post(JOBS, json={"id": new_id()}).json()
    return job["id"], job["job_token"]


def test_revoking_the_key_ends_its_jobs_tokens(server: ServerHandle) -> None:
    user = new_user()
    creator, sibling = server.create_key(user), server.create_key(user)
    job_id, token = make_job(server, creator)
    other_job, other_token = make_job(server, sibling)
    assert write(server, token, job_id).status_code == 200

    revoke_key(server, creator)
    assert_error(write(server, token, job_id, step=1), 401, "unauthorized")
    assert_error(httpx.get(server.base_url + WHOAMI, headers=bearer(token)), 401)
    # Another key of the same user, and its job's token, are untouched; the job's data stays.
    assert write(server, other_token, other_job).status_code == 200
    with server.client(sibling) as http:
        assert http.get(f"{JOBS}/{job_id}").json()["prediction_count"] == 1


def test_rotate_and_revoke_a_jobs_token(server: ServerHandle) -> None:
    user = new_user()
    first, second = server.create_key(user), server.create_key(user)
    job_id, old = make_job(server, first)
    with server.client(second) as http:
        rotated = http.post(f"{JOBS}/{job_id}/token")
        assert rotated.status_code == 200, rotated.text
        job = rotated.json()
        new = job["job_token"]
        assert job["id"] == job_id and new.startswith(JOB_TOKEN_PREFIX) and new != old
        assert_error(write(server, old, job_id), 401)
        assert write(server, new, job_id).status_code == 200
        # The rotated token is bound to the key that rotated it, not to the creator.
        revoke_key(server, first)
        assert write(server, new, job_id, step=1).status_code == 200

        revoked = http.delete(f"{JOBS}/{job_id}/token")
        assert revoked.status_code == 200 and revoked.json()["job_token"] is None
        assert_error(write(server, new, job_id, step=2), 401)
        assert http.get(f"{JOBS}/{job_id}").json()["prediction_count"] == 2
        # Tokens are the owner's business: a foreign or unknown job is 404.
        stranger = server.create_key(new_user())
        with server.client(stranger) as other:
            assert_error(other.post(f"{JOBS}/{job_id}/token"), 404)
            assert_error(other.delete(f"{JOBS}/{job_id}/token"), 404)
        assert_error(http.post(f"{JOBS}/no-such-job/token"), 404)

        again = http.post(f"{JOBS}/{job_id}/token").json()["job_token"]
        # A job token cannot mint or end tokens, its own included.
        assert_error(
            httpx.post(f"{server.base_url}{JOBS}/{job_id}/token", headers=bearer(again)), 403
        )
        assert write(server, again, job_id, step=3).status_code == 200
        revoke_key(server, second)
        assert_error(write(server, again, job_id, step=4), 401)


def test_cli_revokes_a_jobs_token(server: ServerHandle) -> None:
    key = server.create_key(new_user())
    job_id, token = make_job(server, key)
    args = ("jobs", "revoke-token", job_id, "--database-url", server.database_url)
    res = server.cli(*args)
    assert res.returncode == 0, res.stderr + res.stdout
    assert_error(write(server, token, job_id), 401)
    again = server.cli(*args)
    assert again.returncode == 1 and "no job" in again.stdout
    with server.client(key) as http:  # the owner can issue a new one
        fresh = http.post(f"{JOBS}/{job_id}/token").json()["job_token"]
    assert write(server, fresh, job_id).status_code == 200


# -- jobs created before migration 0004 ----------------------------------------------------


def _database_at_0003(backend: Backend, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    url: str = request.getfixturevalue("pg_database_url")
    return url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_jobs_from_before_0004(
    backend: Backend,
    make_server: MakeServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Owner with one key: that key made the job, which is bound to it and keeps its token.
    Owner with several: unknowable, so the token is cleared (401) until the owner rotates it."""
    url = _database_at_0003(backend, tmp_path, request)
    db = Database(url)
    upgrade(db.engine, "0003")
    secrets = {name: new_secret(API_KEY_PREFIX) for name in ("solo", "multi1", "multi2")}
    tokens = {name: new_secret(JOB_TOKEN_PREFIX) for name in ("solo", "multi")}
    now = utcnow()
    with db.write() as conn:
        conn.execute(
            insert(users),
            [
                {"id": 1, "name": "solo", "created_at": now},
                {"id": 2, "name": "multi", "created_at": now},
            ],
        )
        conn.execute(
            insert(api_keys),
            [
                {
                    "id": i,
                    "user_id": uid,
                    "name": name,
                    "prefix": secrets[name][:12],
                    "key_hash": hash_secret(secrets[name]),
                    "scopes": ["all"],
                    "created_at": now,
                }
                for i, (name, uid) in enumerate([("solo", 1), ("multi1", 2), ("multi2", 2)], 1)
            ],
        )
        conn.execute(
            insert(jobs),  # no api_key_id: the 0003 table has no such column
            [
                {
                    "id": f"old-{name}",
                    "user_id": uid,
                    "status": "running",
                    "config": {},
                    "job_token_hash": hash_secret(tokens[name]),
                    "created_at": now,
                    "updated_at": now,
                }
                for name, uid in [("solo", 1), ("multi", 2)]
            ],
        )
    db.dispose()

    server = make_server(backend, database_url=url)  # migrates to head on start
    assert write(server, tokens["solo"], "old-solo").status_code == 200
    assert_error(write(server, tokens["multi"], "old-multi"), 401)
    with server.client(secrets["multi2"]) as http:
        job = http.get(f"{JOBS}/old-multi").json()
        assert job["status"] == "running"
        fresh = http.post(f"{JOBS}/old-multi/token").json()["job_token"]
    assert write(server, fresh, "old-multi").status_code == 200
    revoke_key(server, secrets["solo"])
    assert_error(write(server, tokens["solo"], "old-solo", step=1), 401)
