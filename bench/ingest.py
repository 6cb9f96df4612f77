"""Ingest throughput: SDK over HTTP (batches of 1,000) vs raw SQLite executemany of the same rows.

Targets (issue 2): HTTP ingest >= 0.25x the raw executemany and >= 20,000 predictions/s.
Where PostgreSQL 15 is installed the same run is repeated on it, against a raw COPY of the same
rows into the same table (PostgreSQL's fastest load path); that part has no target.

The raw baseline inserts the same rows, already scored, into an identical table (same schema and
indexes, built by our migrations) in WAL mode with one transaction per 1,000 rows: what the
database alone costs, with no HTTP, validation, scoring or rollups. The two are interleaved batch
by batch and compared by their medians, because this machine's CPU speed drifts by up to 2x
from second to second; timing them one after the other would compare two different machines.
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from _common import postgres_database, prediction_rows, running_server, verdict
from finetune_lab import FinetuneLabClient
from finetune_lab.scoring import score
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.tables import predictions

BATCH = 1_000
BATCHES = 80
WARMUP = 5


COLUMNS = [c.name for c in predictions.c if c.name != "id"]


class RawBaseline(ABC):
    """Pre-scored rows, ready for the database: the part of ingest no server can avoid."""

    def prepare(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        prepared = []
        for row in rows:
            exact, cer, ratio, overlap = score(row["prediction"], row["ground_truth"])
            full = {
                **row,
                "job_id": "raw",
                "user_id": 1,
                "created_at": self.created_at,
                "exact_match": exact,
                "char_error_rate": cer,
                "length_ratio": ratio,
                "word_overlap": overlap,
            }
            prepared.append(tuple(full.get(name) for name in COLUMNS))
        return prepared

    created_at: Any = None

    @abstractmethod
    def insert(self, prepared: list[tuple[Any, ...]]) -> None: ...


class RawSQLite(RawBaseline):
    """Plain executemany in WAL mode, one transaction per batch."""

    created_at = "2026-01-01 00:00:00.000000"

    def __init__(self, path: Path) -> None:
        db = Database(f"sqlite:///{path}")
        upgrade(db.engine)
        db.dispose()
        placeholders = ", ".join("?" * len(COLUMNS))
        self.sql = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def insert(self, prepared: list[tuple[Any, ...]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(self.sql, prepared)
        self.conn.execute("COMMIT")


class RawPostgres(RawBaseline):
    """COPY into the same table (built by our migrations in a second database), one
    transaction per batch."""

    created_at = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __init__(self, database_url: str) -> None:
        import psycopg

        db = Database(database_url)
        upgrade(db.engine)
        db.dispose()
        self.conn = psycopg.connect(
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self.copy = f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN"

    def insert(self, prepared: list[tuple[Any, ...]]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cursor, cursor.copy(self.copy) as copy:
            for values in prepared:
                copy.write_row(values)


def timed(call: Any, *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def measure(server_url: str | None, raw: RawBaseline) -> tuple[list[float], list[float]]:
    """Per-batch seconds of the raw baseline and of SDK ingest, alternated batch by batch."""
    data = [prediction_rows(step=s, epoch=s // 10, count=BATCH) for s in range(BATCHES + WARMUP)]
    raw_times: list[float] = []
    http_times: list[float] = []
    with (
        running_server(server_url) as server,
        FinetuneLabClient(api_key=server.key, base_url=server.url) as client,
    ):
        job = client.jobs.create(name="bench-ingest")
        for index, rows in enumerate(data):
            prepared = raw.prepare(rows)
            raw_t = timed(raw.insert, prepared)
            http_t = timed(client.training_predictions.create, job.id, rows)
            if index >= WARMUP:
                raw_times.append(raw_t)
                http_times.append(http_t)
        stored = client.training_predictions.get(job.id, limit=1).total_count
        assert stored == BATCH * (BATCHES + WARMUP), stored
    return raw_times, http_times


def report(title: str, baseline: str, raw_times: list[float], http_times: list[float]) -> float:
    print(f"{title}: {BATCHES} batches x {BATCH} predictions, interleaved, medians")
    for name, times in (("raw", raw_times), ("http", http_times)):
        q1, q2, q3 = statistics.quantiles(times, n=4)
        print(f"  {name:4} batch ms: p25 {q1 * 1e3:6.2f}  p50 {q2 * 1e3:6.2f}  p75 {q3 * 1e3:6.2f}")
    raw_rate = BATCH / statistics.median(raw_times)
    http_rate = BATCH / statistics.median(http_times)
    print(f"  {baseline:<23}: {raw_rate:10,.0f} predictions/s (baseline)")
    print(f"  {'SDK over HTTP':<23}: {http_rate:10,.0f} predictions/s")
    return http_rate / raw_rate


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw_times, http_times = measure(None, RawSQLite(Path(tmp) / "raw.db"))
    ratio = report("ingest (SQLite)", "raw SQLite executemany", raw_times, http_times)
    http_rate = BATCH / statistics.median(http_times)
    print(f"  ratio HTTP/raw         : {ratio:10.2f}x   target >= 0.25    {verdict(ratio >= 0.25)}")
    print(
        f"  absolute               : {http_rate:10,.0f}/s  target >= 20,000"
        f"  {verdict(http_rate >= 20_000)}"
    )
    with postgres_database() as server_db, postgres_database() as raw_db:
        if server_db is None or raw_db is None:
            print("ingest (PostgreSQL): skipped, PostgreSQL 15 binaries not found")
            return
        raw_times, http_times = measure(server_db, RawPostgres(raw_db))
    ratio = report("ingest (PostgreSQL)", "raw COPY", raw_times, http_times)
    print(f"  ratio HTTP/raw         : {ratio:10.2f}x   (no target)")


if __name__ == "__main__":
    main()
