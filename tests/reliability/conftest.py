"""Fixtures for load and fault tests: several server processes on one PostgreSQL database."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _support.appserver import ServerHandle, ServerStartError
from _support.postgres import PostgresServer

#: ``pg_processes(n, extra_env=None)`` → n servers started at once on one fresh database.
PgProcesses = Callable[..., list[ServerHandle]]


def start_all(handles: list[ServerHandle]) -> None:
    """Start every handle at the same time (they race for the migration lock, as in production)."""
    errors: list[BaseException] = []

    def start(handle: ServerHandle) -> None:
        try:
            handle.start()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(h,)) for h in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@pytest.fixture
def pg_processes(postgres: PostgresServer, tmp_path: Path) -> Iterator[PgProcesses]:
    started: list[ServerHandle] = []

    def make(count: int, extra_env: dict[str, str] | None = None) -> list[ServerHandle]:
        url = postgres.create_database()
        handles = [
            ServerHandle(
                backend="postgresql",
                database_url=url,
                home=tmp_path / f"proc-{n}-{uuid.uuid4().hex[:6]}",
                extra_env=dict(extra_env or {}),
            )
            for n in range(count)
        ]
        started.extend(handles)
        try:
            start_all(handles)
        except ServerStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        return handles

    yield make
    for handle in started:
        handle.stop()
