"""Brings SQLite's text-search index up to date after ingest, off the ingest path (0010).

Ingest writes no index entries: each FTS5 table covers its content table's rows up to a
watermark (`search_watermarks`), and searches scan the rows above it (services/search.py).
This task, one per server process, indexes the rows above the watermark in chunks, each one
short `BEGIN IMMEDIATE` transaction that inserts the chunk's entries with one statement and
moves the watermark past them with a compare-and-set. So several server processes on one
database may run it at once: SQLite's write lock makes their chunks take turns, and a chunk
whose watermark moved meanwhile is rolled back and read again.

It yields to ingest in this process (`IngestActivity`): while batches keep coming it waits
for a pause, but never longer than its last chunk took, so it gets about half of the write
lock and the index catches up as soon as uploads pause. PostgreSQL has no watermark (its GIN
indexes are kept by the database): there the task does not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from sqlalchemy import Connection, text
from starlette.concurrency import run_in_threadpool

from finetune_lab.server.db import Database
from finetune_lab.server.services.ingest_activity import IngestActivity

log = logging.getLogger("finetune_lab.server.search")

SOURCES = {  # content table: (FTS table, its column), as migrations 0006/0010 made them
    "predictions": ("predictions_fts", "prediction"),
    "prediction_texts": ("prediction_texts_fts", "text"),
}
ERROR_BACKOFF_S = 5.0


@dataclass(frozen=True)
class IndexerSettings:
    enabled: bool = True  # FINETUNE_LAB_SEARCH_INDEXER (and FINETUNE_LAB_SEARCH_INDEX)
    chunk_rows: int = 5_000  # FINETUNE_LAB_SEARCH_INDEX_CHUNK_ROWS: rows per transaction
    chunk_chars: int = 250_000  # and at most this many characters (one row at least): ~20 ms
    poll_s: float = 0.2  # FINETUNE_LAB_SEARCH_INDEX_POLL_S: how often to look for new rows


class WatermarkMoved(Exception):
    """Another process indexed the same rows first: this chunk is rolled back."""


def index_chunk(conn: Connection, source: str, settings: IndexerSettings) -> int:
    """In the caller's write transaction: index the next rows of `source` above its watermark
    (at most `chunk_rows`, and `chunk_chars` characters after the first) and move the
    watermark past them. Returns how many rows were indexed."""
    fts, col = SOURCES[source]
    mark = conn.execute(
        text("SELECT watermark FROM search_watermarks WHERE source = :source"), {"source": source}
    ).scalar_one()
    upto, rows, chars = None, 0, 0
    sizes = conn.execute(
        text(f"SELECT id, length({col}) FROM {source} WHERE id > :mark ORDER BY id LIMIT :n"),
        {"mark": mark, "n": settings.chunk_rows},
    )
    for row_id, size in sizes:
        if rows and chars + size > settings.chunk_chars:
            break
        upto, rows, chars = row_id, rows + 1, chars + size
    if upto is None:
        return 0
    # One statement for the chunk: FTS5 writes one segment for it.
    conn.execute(
        text(
            f"INSERT INTO {fts}(rowid, {col}) SELECT id, {col} FROM {source} "
            "WHERE id > :mark AND id <= :upto"
        ),
        {"mark": mark, "upto": upto},
    )
    moved = conn.execute(
        text(
            "UPDATE search_watermarks SET watermark = :upto "
            "WHERE source = :source AND watermark = :mark"
        ),
        {"upto": upto, "source": source, "mark": mark},
    ).rowcount
    if moved != 1:
        raise WatermarkMoved(source)
    return rows


class SearchIndexer:
    """The background task of one server process."""

    def __init__(
        self, db: Database, settings: IndexerSettings, activity: IngestActivity | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.activity = activity
        self._task: asyncio.Task[None] | None = None
        self._last_chunk_s = 0.0

    async def start(self) -> None:
        if not (self.settings.enabled and self.db.is_sqlite and await self._watermarked()):
            return
        self._task = asyncio.create_task(self._run(), name="search-indexer")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _watermarked(self) -> bool:
        def present() -> bool:
            with self.db.read() as conn:
                found = conn.scalar(
                    text(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
                        "'search_watermarks'"
                    )
                )
            return bool(found)

        return await run_in_threadpool(present)

    async def _run(self) -> None:
        while True:
            if self.activity is not None:
                await self.activity.quiet(max_wait_s=max(0.01, self._last_chunk_s))
            try:
                more = await run_in_threadpool(self.step)
            except Exception:
                log.exception("search indexer: a chunk failed; retrying in %.0f s", ERROR_BACKOFF_S)
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            if not more:
                await asyncio.sleep(self.settings.poll_s)

    def step(self) -> bool:
        """One chunk of each source with rows to index, each in its own transaction (the
        write lock only when a read found some). True while rows may be left."""
        with self.db.read() as conn:
            pending = [source for source in SOURCES if _has_rows_above(conn, source)]
        took = 0.0
        for source in pending:
            try:
                with self.db.write() as conn:
                    started = time.perf_counter()  # the work, not the wait for the lock
                    index_chunk(conn, source, self.settings)
                    took += time.perf_counter() - started
            except WatermarkMoved:
                pass  # another process indexed them: read again
        self._last_chunk_s = took
        return bool(pending)


def _has_rows_above(conn: Connection, source: str) -> bool:
    return bool(
        conn.execute(
            text(
                f"SELECT max(id) > (SELECT watermark FROM search_watermarks WHERE source = "
                f":source) FROM {source}"
            ),
            {"source": source},
        ).scalar()
    )
