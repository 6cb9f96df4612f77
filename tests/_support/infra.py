"""Owner of everything the suite starts, so it is started lazily once and stopped in order.

App servers must stop before the PostgreSQL they use, and a failed start should be reported once,
not re-attempted (with a 60 s wait) by every test that needs it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from .appserver import Backend, ServerHandle, sqlite_url
from .postgres import LocalCluster, PostgresServer, external_server
from .redis import RedisServer

ALICE = "alice"

#: Type of the ``make_server`` fixture:
#: ``make_server(backend="sqlite", extra_env=None, database_url=None)``.
MakeServer = Callable[..., ServerHandle]


class Infra:
    """Lazily started PostgreSQL and app servers for one test session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._postgres: PostgresServer | None = None
        self._postgres_error: BaseException | None = None
        self._redis: RedisServer | None = None
        self._redis_error: BaseException | None = None
        self._shared: dict[Backend, ServerHandle] = {}
        self._shared_errors: dict[Backend, BaseException] = {}
        self._servers: list[ServerHandle] = []
        self._alice_keys: dict[int, str] = {}
        self._closed = False

    def postgres(self) -> PostgresServer:
        """The session's PostgreSQL (external if configured, else a local cluster)."""
        if self._postgres_error is not None:
            raise self._postgres_error
        if self._postgres is None:
            try:
                self._postgres = external_server() or LocalCluster()
            except BaseException as exc:
                self._postgres_error = exc
                raise
        return self._postgres

    def redis(self) -> RedisServer:
        """The session's Redis (a private ``redis-server``), started on first use."""
        if self._redis_error is not None:
            raise self._redis_error
        if self._redis is None:
            try:
                self._redis = RedisServer()
            except BaseException as exc:
                self._redis_error = exc
                raise
        return self._redis

    def database_url(self, backend: Backend, home: Path) -> str:
        """A fresh, empty database for a new server."""
        if backend == "sqlite":
            return sqlite_url(home)
        return self.postgres().create_database()

    def new_server(
        self,
        backend: Backend,
        extra_env: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> ServerHandle:
        """Start a server with its own home dir and its own fresh database (or, given
        ``database_url``, another server's: several processes behind one database)."""
        home = self.root / f"{backend}-{uuid.uuid4().hex[:8]}"
        home.mkdir(parents=True)
        handle = ServerHandle(
            backend=backend,
            database_url=database_url or self.database_url(backend, home),
            home=home,
            extra_env=dict(extra_env or {}),
        )
        self._servers.append(handle)
        handle.start()
        return handle

    def shared_server(self, backend: Backend) -> ServerHandle:
        """The one server per backend that most tests share (started on first use)."""
        if backend in self._shared_errors:
            raise self._shared_errors[backend]
        if backend not in self._shared:
            try:
                # Most tests share alice's key on these: keep the limiter on, out of reach
                # (tests/server/test_security.py checks the limits on private servers).
                self._shared[backend] = self.new_server(
                    backend, extra_env={"FINETUNE_LAB_RATE_LIMIT": "100000/minute"}
                )
            except BaseException as exc:
                self._shared_errors[backend] = exc
                raise
        return self._shared[backend]

    def alice_key(self, server: ServerHandle) -> str:
        """An all-scopes key for user ``alice`` on ``server``, created once per server."""
        key = self._alice_keys.get(id(server))
        if key is None:
            key = server.create_key(ALICE, scopes="all", name="alice-tests")
            self._alice_keys[id(server)] = key
        return key

    def stop_server(self, handle: ServerHandle) -> None:
        """Stop a server started by ``new_server`` before the session ends."""
        handle.stop()
        self._servers = [s for s in self._servers if s is not handle]

    def close(self) -> None:
        """Stop app servers first, then Redis and PostgreSQL. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for handle in reversed(self._servers):
            handle.stop()
        self._servers.clear()
        if self._redis is not None:
            self._redis.close()
            self._redis = None
        if self._postgres is not None:
            self._postgres.close()
            self._postgres = None
