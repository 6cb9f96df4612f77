"""Smoke tests for the test infrastructure itself: if these fail, nothing else is meaningful."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from _support.appserver import Backend, ServerHandle
from _support.infra import MakeServer
from _support.postgres import PostgresServer


def test_postgres_fixture_gives_a_working_postgres_15(pg_database_url: str) -> None:
    """The PostgreSQL fixture must be a real, reachable PostgreSQL 15 with a usable database."""
    libpq_url = pg_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq_url, connect_timeout=10) as conn:
        row = conn.execute("select version()").fetchone()
        assert row is not None
        assert "PostgreSQL 15" in row[0]
        conn.execute("create table smoke (id int primary key)")
        conn.execute("insert into smoke values (1)")
        assert conn.execute("select count(*) from smoke").fetchone() == (1,)


def test_postgres_databases_are_isolated(postgres: PostgresServer) -> None:
    """Each created database starts empty, so servers never see each other's tables."""
    first, second = postgres.create_database(), postgres.create_database()
    assert first != second
    with psycopg.connect(first.replace("+psycopg", "", 1)) as conn:
        conn.execute("create table only_here (id int)")
    with psycopg.connect(second.replace("+psycopg", "", 1)) as conn:
        row = conn.execute("select to_regclass('public.only_here')").fetchone()
        assert row == (None,)


def test_server_healthz_reports_backend(server: ServerHandle) -> None:
    """``server`` is up, unauthenticated /healthz works and names the backend under test."""
    resp = httpx.get(f"{server.base_url}/healthz", timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok"
    assert body["database"] == server.backend
    assert server.database_url.startswith(
        "sqlite:///" if server.backend == "sqlite" else "postgresql+psycopg://"
    )


def test_api_key_authenticates_as_alice(http: httpx.Client) -> None:
    """The ``api_key`` fixture yields a working key for user alice."""
    resp = http.get("/api/auth/whoami")
    assert resp.status_code == 200, resp.text
    assert resp.json()["user"] == "alice"


def test_unique_job_ids_differ(unique_job_id: str) -> None:
    """Job ids are fresh per test and valid per the contract (``[A-Za-z0-9._:-]``, ≤128 chars)."""
    assert unique_job_id.startswith("t-")
    assert len(unique_job_id) <= 128


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_restart_keeps_port_and_data(make_server: MakeServer, backend: Backend) -> None:
    """``restart()`` comes back on the same URL and database: keys made before still work."""
    srv = make_server(backend)
    key = srv.create_key("restart-user", scopes="training")
    url, pid = srv.base_url, srv.pid
    srv.restart()
    assert srv.base_url == url
    assert srv.pid != pid
    with srv.client(key) as client:
        resp = client.get("/api/auth/whoami")
    assert resp.status_code == 200, resp.text
    assert resp.json()["user"] == "restart-user"
