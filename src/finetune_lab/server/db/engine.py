"""One Database object per process: the engine plus the write discipline of its backend.

SQLite allows one writer at a time; instead of fighting `database is locked`, writes in this
process queue on a lock and open `BEGIN IMMEDIATE` transactions. PostgreSQL takes concurrent
writers; per-job ordering there comes from advisory locks in the ingest service.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import orjson
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine, make_url

from finetune_lab.server.db.sqlite_file import make_private, sqlite_path


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_loads(value: Any) -> Any:
    """SQLite gives a JSON column numeric affinity: a stored scalar `5` or `1.5` comes back as
    a number, not as JSON text."""
    if isinstance(value, (int, float)):
        return value
    return orjson.loads(value)


def normalize_url(url: str) -> str:
    """Accept the URLs people paste (`postgresql://`, `postgres://`) and pick our drivers."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_engine(url: str) -> Engine:
    path = sqlite_path(make_url(url).database)
    if path is not None:
        make_private(path)
    engine = create_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=_json_loads,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=8,
        max_overflow=8,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",  # durable against process crashes in WAL mode
            "busy_timeout=30000",
            "foreign_keys=ON",
            "cache_size=-65536",
            "temp_store=MEMORY",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


def _postgres_engine(url: str, pool_size: int) -> Engine:
    return create_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.is_postgres = self.url.startswith("postgresql")
        if not (self.is_sqlite or self.is_postgres):
            raise ValueError(
                f"unsupported database URL {make_url(self.url).drivername!r}: use sqlite:/// or postgresql://"
            )
        self.engine = (
            _sqlite_engine(self.url) if self.is_sqlite else _postgres_engine(self.url, pool_size)
        )
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self.backend = "sqlite" if self.is_sqlite else "postgresql"

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent snapshot for several queries (counts and pages agree)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One atomic write transaction; commits on success, rolls back on any exception."""
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self.engine.connect() as conn:
            if self.is_sqlite:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()
