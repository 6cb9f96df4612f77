"""Ingest throughput: SDK over HTTP (batches of 1,000) vs raw SQLite executemany of the same rows.

Targets (issue 2): HTTP ingest >= 0.25x the raw executemany and >= 20,000 predictions/s.
The raw baseline inserts the same rows, already scored, into an identical table (same schema and
indexes, built by our migrations) in WAL mode with one transaction per 1,000 rows: what the
database alone costs, with no HTTP, validation, scoring or rollups.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from _common import prediction_rows, running_server, verdict
from finetune_lab import FinetuneLabClient
from finetune_lab.scoring import score
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.tables import predictions

BATCH = 1_000
BATCHES = 60


def batches() -> list[list[dict]]:
    return [prediction_rows(step=s, epoch=s // 10, count=BATCH) for s in range(BATCHES)]


def http_rate(data: list[list[dict]]) -> float:
    with (
        running_server() as server,
        FinetuneLabClient(api_key=server.key, base_url=server.url) as client,
    ):
        job = client.jobs.create(name="bench-ingest")
        client.training_predictions.create(
            job.id, prediction_rows(step=10_000, epoch=999, count=BATCH)
        )
        started = time.perf_counter()
        for rows in data:
            client.training_predictions.create(job.id, rows)
        elapsed = time.perf_counter() - started
        stored = client.training_predictions.get(job.id, limit=1).total_count
        assert stored == BATCH * (BATCHES + 1), stored
    return BATCH * BATCHES / elapsed


def raw_rate(data: list[list[dict]]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.db"
        db = Database(f"sqlite:///{path}")
        upgrade(db.engine)
        db.dispose()
        columns = [c.name for c in predictions.c if c.name != "id"]
        placeholders = ", ".join("?" * len(columns))
        sql = f"INSERT INTO predictions ({', '.join(columns)}) VALUES ({placeholders})"
        prepared = []
        for rows in data:
            batch = []
            for row in rows:
                scores = score(row["prediction"], row["ground_truth"])
                full = {
                    **row,
                    "job_id": "raw",
                    "user_id": 1,
                    "created_at": "2026-01-01 00:00:00.000000",
                    "exact_match": scores[0],
                    "char_error_rate": scores[1],
                    "length_ratio": scores[2],
                    "word_overlap": scores[3],
                }
                batch.append(tuple(full.get(name) for name in columns))
            prepared.append(batch)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        started = time.perf_counter()
        for batch in prepared:
            conn.execute("BEGIN")
            conn.executemany(sql, batch)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return BATCH * BATCHES / elapsed


def main() -> None:
    data = batches()
    raw = raw_rate(data)
    http = http_rate(data)
    ratio = http / raw
    print(f"ingest: {BATCHES} batches x {BATCH} predictions")
    print(f"  raw SQLite executemany : {raw:10,.0f} predictions/s (baseline)")
    print(f"  SDK over HTTP          : {http:10,.0f} predictions/s")
    print(f"  ratio HTTP/raw         : {ratio:10.2f}x   target >= 0.25  {verdict(ratio >= 0.25)}")
    print(
        f"  absolute               : {http:10,.0f}/s  target >= 20,000  {verdict(http >= 20_000)}"
    )


if __name__ == "__main__":
    main()
