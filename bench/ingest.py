"""Ingest throughput: SDK over HTTP (batches of 1,000) vs raw SQLite executemany of the same rows.

Targets (issue 2): HTTP ingest >= 0.25x the raw executemany and >= 20,000 predictions/s.

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
from pathlib import Path
from typing import Any

from _common import prediction_rows, running_server, verdict
from finetune_lab import FinetuneLabClient
from finetune_lab.scoring import score
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.tables import predictions

BATCH = 1_000
BATCHES = 80
WARMUP = 5


class RawSQLite:
    """The baseline: plain executemany of pre-scored rows into the same schema."""

    def __init__(self, path: Path) -> None:
        db = Database(f"sqlite:///{path}")
        upgrade(db.engine)
        db.dispose()
        self.columns = [c.name for c in predictions.c if c.name != "id"]
        placeholders = ", ".join("?" * len(self.columns))
        self.sql = f"INSERT INTO predictions ({', '.join(self.columns)}) VALUES ({placeholders})"
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def prepare(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        prepared = []
        for row in rows:
            exact, cer, ratio, overlap = score(row["prediction"], row["ground_truth"])
            full = {
                **row,
                "job_id": "raw",
                "user_id": 1,
                "created_at": "2026-01-01 00:00:00.000000",
                "exact_match": exact,
                "char_error_rate": cer,
                "length_ratio": ratio,
                "word_overlap": overlap,
            }
            prepared.append(tuple(full.get(name) for name in self.columns))
        return prepared

    def insert(self, prepared: list[tuple[Any, ...]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(self.sql, prepared)
        self.conn.execute("COMMIT")


def timed(call: Any, *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def main() -> None:
    data = [prediction_rows(step=s, epoch=s // 10, count=BATCH) for s in range(BATCHES + WARMUP)]
    raw_times: list[float] = []
    http_times: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server() as server,
        FinetuneLabClient(api_key=server.key, base_url=server.url) as client,
    ):
        raw = RawSQLite(Path(tmp) / "raw.db")
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
    raw_rate = BATCH / statistics.median(raw_times)
    http_rate = BATCH / statistics.median(http_times)
    ratio = http_rate / raw_rate
    print(f"ingest: {BATCHES} batches x {BATCH} predictions, interleaved, medians")
    for name, times in (("raw", raw_times), ("http", http_times)):
        q1, q2, q3 = statistics.quantiles(times, n=4)
        print(f"  {name:4} batch ms: p25 {q1 * 1e3:6.2f}  p50 {q2 * 1e3:6.2f}  p75 {q3 * 1e3:6.2f}")
    print(f"  raw SQLite executemany : {raw_rate:10,.0f} predictions/s (baseline)")
    print(f"  SDK over HTTP          : {http_rate:10,.0f} predictions/s")
    print(f"  ratio HTTP/raw         : {ratio:10.2f}x   target >= 0.25    {verdict(ratio >= 0.25)}")
    print(
        f"  absolute               : {http_rate:10,.0f}/s  target >= 20,000"
        f"  {verdict(http_rate >= 20_000)}"
    )


if __name__ == "__main__":
    main()
