"""Wake-ups for SSE streams when a job's events commit.

In one process the ingest route publishes after its commit. On PostgreSQL the ingest
transaction also sends `NOTIFY`, and each server process LISTENs on one connection of its own,
so the streams of every process behind a load balancer wake up. Streams also re-read on a slow
timer: a lost notification only delays an event, it never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy.engine import make_url

from finetune_lab.server.services.stream import NOTIFY_CHANNEL

log = logging.getLogger("finetune_lab.server.stream")
RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 5.0)


class StreamNotifier:
    """Per-job wake-up flags for the streams of this process (used from the event loop only)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    def publish(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def publish_all(self) -> None:
        """After a lost LISTEN connection: every stream re-reads (it may have missed a notify)."""
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()


def _conninfo(database_url: str) -> str:
    """psycopg's own connection string from our SQLAlchemy URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PostgresListener:
    """One LISTEN connection per process, started with the first stream, reconnecting."""

    def __init__(self, database_url: str, notifier: StreamNotifier) -> None:
        self._conninfo = _conninfo(database_url)
        self._notifier = notifier
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def ensure_listening(self, timeout: float = 5.0) -> None:
        """Start the listener if needed and wait (bounded) until LISTEN is in effect, so a
        stream that reads after this cannot miss a notification sent after its read."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="finetune-lab-listen")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout)

    async def _run(self) -> None:
        import psycopg

        attempt = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listening.set()
                    attempt = 0
                    async for notice in conn.notifies():
                        self._notifier.publish(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database restarted or the network broke
                log.warning("stream LISTEN connection lost: %s", exc)
            self._listening.clear()
            self._notifier.publish_all()
            await asyncio.sleep(RECONNECT_DELAYS_S[min(attempt, len(RECONNECT_DELAYS_S) - 1)])
            attempt += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
