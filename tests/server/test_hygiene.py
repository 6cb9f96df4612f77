"""Data hygiene: the SQLite file is private, expired sessions go away, and JSON nested too deep
for storage is a 422 (never a 500) on every JSON-typed input."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select, update

from _support.appserver import ServerHandle
from _support.infra import MakeServer
from finetune_lab.schema import MAX_JSON_DEPTH
from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import api_keys, sessions
from finetune_lab.server.services.keys import PURGE_BATCH
from finetune_lab.server.services.tokens import hash_secret

from ._helpers import JOBS, assert_error, assert_not_500, create_job, ingest, row

SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _database_files(home: Path) -> list[Path]:
    db = home / "finetune-lab.db"
    return [db, *(p for s in SIDE_SUFFIXES if (p := Path(f"{db}{s}")).exists())]


def test_the_sqlite_database_and_its_side_files_are_private(make_server: MakeServer) -> None:
    srv = make_server("sqlite")
    key = srv.create_key("private")
    with srv.client(key) as http:
        job = create_job(http, f"p-{uuid.uuid4().hex[:8]}")
        ingest(http, job["id"], [row(0, 0, 0)])
        files = _database_files(srv.home)
        assert any(p.name.endswith("-wal") for p in files), files  # WAL mode: written now
        assert {p.name: oct(_mode(p)) for p in files} == {p.name: "0o600" for p in files}

    # A database made by an older version (0644) is tightened when the server starts.
    srv.stop()
    lax = _database_files(srv.home)
    for path in lax:
        path.chmod(0o644)
    srv.start()
    assert {p.name: oct(_mode(p)) for p in lax} == {p.name: "0o600" for p in lax}
    with srv.client(key) as http:
        assert http.get(JOBS).status_code == 200  # and it still works
        files = _database_files(srv.home)
        assert {p.name: oct(_mode(p)) for p in files} == {p.name: "0o600" for p in files}


def _expire(db: Database, token: str) -> None:
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    with db.write() as conn:
        conn.execute(
            update(sessions)
            .where(sessions.c.token_hash == hash_secret(token))
            .values(expires_at=past)
        )


def _count(db: Database, *where: object) -> int:
    with db.read() as conn:
        return int(conn.scalar(select(func.count()).select_from(sessions).where(*where)) or 0)


def test_expired_sessions_are_deleted_in_bounded_batches(
    server: ServerHandle, http: httpx.Client
) -> None:
    db = Database(server.database_url)
    try:
        old = http.post("/api/auth/session").json()["token"]
        _expire(db, old)
        whoami = httpx.get(
            f"{server.base_url}/api/auth/whoami", headers={"Authorization": f"Bearer {old}"}
        )
        assert_error(whoami, 401)
        # A backlog bigger than one batch (expired rows of a fresh key of this test's own).
        key_id = _key_id(db, http)
        past = datetime.now(timezone.utc) - timedelta(days=2)
        backlog = [
            {
                "api_key_id": key_id,
                "token_hash": hash_secret(f"fls_gone-{uuid.uuid4().hex}"),
                "created_at": past,
                "expires_at": past,
            }
            for _ in range(PURGE_BATCH + 20)
        ]
        with db.write() as conn:
            conn.execute(insert(sessions), backlog)
        now = datetime.now(timezone.utc)
        before = _count(db, sessions.c.expires_at <= now)
        assert before >= len(backlog) + 1

        new = http.post("/api/auth/session")
        assert new.status_code == 201
        after = _count(db, sessions.c.expires_at <= now)
        assert after == before - PURGE_BATCH  # bounded: one batch per new session
        assert _count(db, sessions.c.token_hash == hash_secret(old)) == 0  # oldest go first
        assert _count(db, sessions.c.token_hash == hash_secret(new.json()["token"])) == 1
        for _ in range(after // PURGE_BATCH + 1):
            assert http.post("/api/auth/session").status_code == 201
        assert _count(db, sessions.c.expires_at <= now) == 0
        # Live sessions are untouched.
        live = httpx.get(
            f"{server.base_url}/api/auth/whoami",
            headers={"Authorization": f"Bearer {new.json()['token']}"},
        )
        assert live.status_code == 200
    finally:
        db.dispose()


def _key_id(db: Database, http: httpx.Client) -> int:
    prefix = str(http.headers["x-api-key"])[:12]
    with db.read() as conn:
        return int(conn.scalar(select(api_keys.c.id).where(api_keys.c.prefix == prefix)))


def _nested(depth: int) -> str:
    """`depth` levels of arrays and objects, as raw JSON text."""
    text = "1"
    for level in range(depth):
        text = f"[{text}]" if level % 2 else f'{{"k": {text}}}'
    return text


def _post(http: httpx.Client, path: str, body: str) -> httpx.Response:
    return http.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 255, 300, 900])
def test_deeply_nested_json_is_422_never_500(
    http: httpx.Client, unique_job_id: str, depth: int
) -> None:
    # `depth` counts the field's own object: config = {"a": <depth - 1 levels>}.
    inner = _nested(depth - 1)
    ok = depth <= MAX_JSON_DEPTH
    cases = {
        "job config": (JOBS, f'{{"id": "{unique_job_id}", "config": {{"a": {inner}}}}}'),
        "validators schema": (
            JOBS,
            f'{{"config": {{"predictions": {{"validators": {{"json_schema": '
            f'{{"a": {_nested(depth - 4)}}}}}}}}}}}',
        ),
        "trace metadata": (
            "/api/analytics/traces",
            f'{{"model": "m", "metadata": {{"a": {inner}}}}}',
        ),
        "trace input": ("/api/analytics/traces", f'{{"model": "m", "input": {_nested(depth)}}}'),
    }
    for name, (path, body) in cases.items():
        resp = _post(http, path, body)
        if ok:
            assert resp.status_code == 201, (name, resp.text[:300])
        else:
            error = assert_error(resp, 422)
            assert "nest" in error["message"], (name, error)
    if ok:  # what was accepted reads back whole
        config = http.get(f"{JOBS}/{unique_job_id}").json()["config"]
        assert config == {"a": json.loads(inner)}
    # Other JSON-bearing inputs: whatever the depth, never a 500.
    messages = f'[{{"role": "user", "content": "x", "extra": {_nested(depth)}}}]'
    for path, body in (
        ("/api/test-suites", f'{{"name": "s", "items": [{{"messages": {messages}}}]}}'),
        ("/api/test-suites/upload?name=s", f'[{{"messages": {messages}}}]'),
        ("/v1/chat/completions", f'{{"model": "nope", "messages": {messages}}}'),
        (f"/api/training/predictions/{unique_job_id}", f'{{"predictions": {_nested(depth)}}}'),
    ):
        assert_not_500(_post(http, path, body))
