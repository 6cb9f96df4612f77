"""Session fixtures that run the real server (SQLite and PostgreSQL) as subprocesses.

Fixture interface (see tests/_support for the implementation):

- ``server``: session-scoped ``ServerHandle``, parametrized ``sqlite`` / ``postgresql`` so API
  tests run on both backends. ``sqlite_server`` / ``pg_server``: the same instances, one backend.
- ``api_key``: all-scopes key of user ``alice`` on ``server``; ``http``: httpx client with it.
- ``unique_job_id``: fresh ``t-<hex>`` job id so tests sharing a server never collide.
- ``postgres``: the session's PostgreSQL (``create_database()`` → SQLAlchemy URL);
  ``pg_database_url``: a fresh empty PostgreSQL database for one test.
- ``make_server``: start a private server (own database, optional extra env) for one test;
  ``database_url=`` another server's to run several processes on one database.
- ``redis``: the session's ``redis-server`` (``.url`` for ``FINETUNE_LAB_RATE_LIMIT_STORAGE``).
- ``app``: the fast layer: ``create_app`` in this process on SQLite behind a ``TestClient``
  (module-scoped; ``app.client`` sends ``alice``'s all-scopes key). No subprocess, no port.

PostgreSQL comes from ``FINETUNE_LAB_TEST_POSTGRES_URL`` or a throwaway local cluster. Without
binaries, PostgreSQL tests skip locally but fail when ``CI`` is set: CI must cover that backend.
Redis (Debian's ``redis-server``) follows the same rule.
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from _support.appserver import Backend, ServerHandle, ServerStartError
from _support.infra import Infra, MakeServer
from _support.postgres import EXTERNAL_URL_ENV, LocalCluster, PostgresServer, PostgresUnavailable
from _support.redis import RedisServer, RedisUnavailable

if TYPE_CHECKING:
    from _support.inprocess import InProcessApp

BACKENDS: list[Backend] = ["sqlite", "postgresql"]


def in_ci() -> bool:
    """True when the ``CI`` env var is set to anything but an explicit false value."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def _infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """Everything the session starts; atexit covers exits that skip fixture teardown."""
    infra = Infra(tmp_path_factory.mktemp("servers"))
    atexit.register(infra.close)
    try:
        yield infra
    finally:
        infra.close()
        atexit.unregister(infra.close)


@pytest.fixture(scope="session")
def postgres(_infra: Infra) -> PostgresServer:
    """The session's PostgreSQL server; skip (local) or fail (CI) when it is not installed."""
    try:
        return _infra.postgres()
    except PostgresUnavailable as exc:
        if in_ci():
            pytest.fail(f"{exc}; CI must run the PostgreSQL suite", pytrace=False)
        pytest.skip(f"{exc} (install postgresql-15 or set {EXTERNAL_URL_ENV})")


@pytest.fixture(scope="session")
def redis(_infra: Infra) -> RedisServer:
    """The session's Redis; skip (local) or fail (CI) when redis-server is not installed."""
    try:
        return _infra.redis()
    except RedisUnavailable as exc:
        if in_ci():
            pytest.fail(f"{exc}; CI must run the shared rate-limit tests", pytrace=False)
        pytest.skip(f"{exc} (install redis-server)")


@pytest.fixture
def private_cluster(postgres: PostgresServer) -> Iterator[LocalCluster]:
    """A PostgreSQL cluster of the test's own, so stopping it disturbs no other test.
    Committed means on disk (as PostgreSQL ships): a crash the test makes must lose nothing."""
    try:
        cluster = LocalCluster(settings={"synchronous_commit": "on"})
    except PostgresUnavailable as exc:  # only with an external FINETUNE_LAB_TEST_POSTGRES_URL
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg_database_url(postgres: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database (SQLAlchemy URL) for tests such as migrations."""
    return postgres.create_database()


def _server_for(request: pytest.FixtureRequest, infra: Infra, backend: Backend) -> ServerHandle:
    if backend == "postgresql":
        request.getfixturevalue("postgres")  # applies the skip-locally / fail-in-CI policy
    try:
        return infra.shared_server(backend)
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session", params=BACKENDS, ids=BACKENDS)
def server(request: pytest.FixtureRequest, _infra: Infra) -> ServerHandle:
    """The shared server of each backend; tests using it run once per backend."""
    backend: Backend = request.param
    return _server_for(request, _infra, backend)


@pytest.fixture(scope="session")
def sqlite_server(request: pytest.FixtureRequest, _infra: Infra) -> ServerHandle:
    """The shared SQLite server (same instance as ``server[sqlite]``)."""
    return _server_for(request, _infra, "sqlite")


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest, _infra: Infra) -> ServerHandle:
    """The shared PostgreSQL server (same instance as ``server[postgresql]``)."""
    return _server_for(request, _infra, "postgresql")


@pytest.fixture(scope="session")
def api_key(server: ServerHandle, _infra: Infra) -> str:
    """All-scopes API key of user ``alice`` on ``server`` (created once per server)."""
    return _infra.alice_key(server)


@pytest.fixture
def http(server: ServerHandle, api_key: str) -> Iterator[httpx.Client]:
    """httpx client for ``server`` authenticated as alice."""
    with server.client(api_key) as client:
        yield client


@pytest.fixture
def unique_job_id() -> str:
    """A job id no other test uses, since tests share one server per backend."""
    return f"t-{uuid.uuid4().hex}"


@pytest.fixture
def make_server(request: pytest.FixtureRequest, _infra: Infra) -> Iterator[MakeServer]:
    """Factory for private servers (own database; ``extra_env`` for settings) stopped after the
    test: for tests that restart, reconfigure or otherwise disturb a server.

    Usage: ``srv = make_server("postgresql", extra_env={...})``; a second process on the same
    database: ``make_server("postgresql", database_url=srv.database_url)``.
    """
    started: list[ServerHandle] = []

    def make(
        backend: Backend = "sqlite",
        extra_env: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> ServerHandle:
        if backend == "postgresql":
            request.getfixturevalue("postgres")
        try:
            handle = _infra.new_server(backend, extra_env=extra_env, database_url=database_url)
        except ServerStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(handle)
        return handle

    yield make
    for handle in started:
        _infra.stop_server(handle)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    """The fast layer: the app in this process on SQLite (see _support/inprocess.py); one per
    test module. `app.client` sends an all-scopes key of `alice`."""
    from _support.inprocess import inprocess_app  # the server stack: only when asked for

    with inprocess_app(tmp_path_factory.mktemp("app")) as running:
        yield running
