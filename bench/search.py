"""Text search (`q`) for a rare word: the index of migration 0006 against the scan, by job size.

Targets (issue 14): the rare-word search on a 200k-row job costs at most 3x the same search
on a 2k-row job, and under 50 ms on a 1M-row job (SQLite; PostgreSQL reported too).

One database per backend holds jobs of 2k, 200k and 1M rows (200 samples; 1,000-character
prompts and 200-character ground truths, stored once; ~60-character predictions drawn from a
small vocabulary, so their trigrams are common). Three predictions of each job hold the rare
word. The rows are written straight into the tables the migrations built (on SQLite then
indexed as the server's indexer does it, behind the watermark of migration 0010, in large
chunks; the GIN indexes are rebuilt after the load on PostgreSQL), which takes seconds
instead of the minutes ingest would; what is measured is the API: two real
server processes on that database, one with the index (the default) and one with
FINETUNE_LAB_SEARCH_INDEX=off (the scan), answering `GET /api/training/predictions/{job}?q=`
over HTTP in the same run, alternately, median of the repetitions. Also shown: a 2-character
query within one round (what the dashboard sends while typing), which scans that round only,
and (SQLite) the largest job's search while TAIL rows of another job await the indexer: a
search scans the rows above the watermark.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select

from _common import postgres_database, running_server, verdict
from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import jobs, prediction_texts, round_rollups, users
from finetune_lab.server.services.search_indexer import SOURCES, IndexerSettings, index_chunk
from finetune_lab.server.services.texts import digest

SAMPLES = 200
TAIL = 10_000
RARE = "quetzalcoatl"
WORDS = tuple(
    [
        "the",
        "a",
        "model",
        "answer",
        "is",
        "likely",
        "correct",
        "because",
        "value",
        "token",
        "train",
        "epoch",
        "loss",
        "rate",
        "gradient",
        "batch",
        "sample",
        "prompt",
        "output",
        "learn",
        "weight",
        "layer",
        "number",
        "result",
        "total",
        "count",
        "sum",
        "list",
    ]
)
COLUMNS = (
    "job_id",
    "user_id",
    "epoch",
    "step",
    "sample_index",
    "prompt_text_id",
    "truth_text_id",
    "prediction",
    "created_at",
)


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def build_job(db: Database, user_id: int, job_id: str, rows: int) -> None:
    """A job of `rows` predictions, written straight into the tables (see the docstring)."""
    rng = random.Random(rows)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rounds = rows // SAMPLES
    rare = {(rounds // 3, 5), (rounds // 2, 77), (rounds - 1, 150)}
    with db.write() as conn:
        conn.execute(
            insert(jobs).values(
                id=job_id,
                user_id=user_id,
                status="running",
                config={},
                created_at=now,
                updated_at=now,
            )
        )
        texts = [f"{_words(rng, 160)[:1000]} #{i}" for i in range(SAMPLES)]
        texts += [f"truth {i}: {_words(rng, 35)[:200]}" for i in range(SAMPLES)]
        conn.execute(
            insert(prediction_texts),
            [{"job_id": job_id, "digest": digest(t), "text": t} for t in texts],
        )
        ids = dict(
            conn.execute(
                select(prediction_texts.c.text, prediction_texts.c.id).where(
                    prediction_texts.c.job_id == job_id
                )
            ).all()
        )
        conn.execute(
            insert(round_rollups),
            [
                {
                    "job_id": job_id,
                    "step": r,
                    "epoch": r // 10,
                    "sample_count": SAMPLES,
                    **{f"{k}_n": 0 for k in ("em", "cer", "lr", "wo", "vp")},
                    "vp_pass": 0,
                }
                for r in range(rounds)
            ],
        )
    stamp: Any = now if db.is_postgres else now.strftime("%Y-%m-%d %H:%M:%S.%f")
    chunk: list[tuple[Any, ...]] = []
    for r in range(rounds):
        for i in range(SAMPLES):
            prediction = _words(rng, 10) + (f" {RARE}" if (r, i) in rare else "")
            prompt_id, truth_id = ids[texts[i]], ids[texts[SAMPLES + i]]
            chunk.append((job_id, user_id, r // 10, r, i, prompt_id, truth_id, prediction, stamp))
            if len(chunk) == 50_000:
                _write(db, chunk)
                chunk = []
    if chunk:
        _write(db, chunk)


def _write(db: Database, rows: list[tuple[Any, ...]]) -> None:
    with db.write() as conn:
        if db.is_postgres:
            raw: Any = conn.connection.driver_connection
            with (
                raw.cursor() as cursor,
                cursor.copy(f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN") as copy,
            ):
                for values in rows:
                    copy.write_row(values)
            return
        # One INSERT ... SELECT per chunk: the FTS5 triggers write one segment for it.
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS bench_rows AS "
            f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE 0"
        )
        marks = ", ".join("?" for _ in COLUMNS)
        conn.exec_driver_sql(f"INSERT INTO bench_rows VALUES ({marks})", rows)
        conn.exec_driver_sql(
            f"INSERT INTO predictions ({', '.join(COLUMNS)}) SELECT * FROM bench_rows"
        )
        conn.exec_driver_sql("DELETE FROM bench_rows")


def index_all(db: Database) -> int:
    """SQLite: index every row above the watermarks, as the server's indexer would (larger
    chunks: nothing else writes meanwhile)."""
    if db.is_postgres:
        return 0
    settings = IndexerSettings(chunk_rows=100_000, chunk_chars=50_000_000)
    total = 0
    for source in SOURCES:
        while True:
            with db.write() as conn:
                done = index_chunk(conn, source, settings)
            if not done:
                break
            if source == "predictions":
                total += done
    return total


@contextlib.contextmanager
def pg_gin_dropped(db: Database) -> Iterator[None]:
    """PostgreSQL: load without the GIN indexes, then build them once (as a migration would)."""
    if not db.is_postgres:
        yield
        return
    with db.write() as conn:
        conn.exec_driver_sql("DROP INDEX ix_predictions_prediction_trgm")
    yield
    with db.write() as conn:
        conn.exec_driver_sql(
            "CREATE INDEX ix_predictions_prediction_trgm ON predictions "
            "USING gin (prediction gin_trgm_ops) WITH (gin_pending_list_limit = 256)"
        )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")


def timed_get(client: httpx.Client, path: str, params: dict[str, Any]) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, int(response.json()["total_count"])


def measure(
    servers: dict[str, Any], job_id: str, params: dict[str, Any], reps: int
) -> dict[str, float]:
    """Median ms per server, requests alternating between them (after one warm-up each)."""
    path = f"/api/training/predictions/{job_id}"
    times: dict[str, list[float]] = {name: [] for name in servers}
    counts: dict[str, int] = {}
    clients = {
        name: httpx.Client(base_url=s.url, headers={"X-API-Key": s.key}, timeout=600)
        for name, s in servers.items()
    }
    try:
        for rep in range(reps + 1):
            for name, client in clients.items():
                elapsed, counts[name] = timed_get(client, path, params)
                if rep:
                    times[name].append(elapsed)
    finally:
        for client in clients.values():
            client.close()
    assert len(set(counts.values())) == 1, counts  # index and scan agree
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def run_backend(name: str, database_url: str, sizes: list[int], reps: int) -> None:
    with (
        # the bench indexes (index_all), not the server
        running_server(database_url, env={"FINETUNE_LAB_SEARCH_INDEXER": "off"}) as indexed,
        running_server(database_url, env={"FINETUNE_LAB_SEARCH_INDEX": "off"}) as scan,
    ):
        db = Database(database_url)
        with db.read() as conn:
            user_id = int(conn.scalar(select(users.c.id).where(users.c.name == "bench")) or 0)
        started = time.perf_counter()
        with pg_gin_dropped(db):
            for size in sizes:
                build_job(db, user_id, f"search-{size}", size)
        print(
            f"{name}: built jobs of {', '.join(f'{s:,}' for s in sizes)} rows in "
            f"{time.perf_counter() - started:.0f} s"
        )
        started = time.perf_counter()
        indexed_rows = index_all(db)
        if indexed_rows:
            took = time.perf_counter() - started
            print(
                f"  indexed behind the watermark: {indexed_rows:,} rows in {took:.0f} s "
                f"({indexed_rows / took:,.0f} rows/s, off the ingest path)"
            )
        results: dict[int, dict[str, float]] = {}
        servers = {"index": indexed, "scan": scan}
        for size in sizes:
            # The scan of a 1M-row job takes seconds: fewer repetitions of it.
            n = reps if size <= 200_000 else max(3, reps // 3)
            results[size] = measure(servers, f"search-{size}", {"q": RARE, "limit": 50}, n)
            print(
                f"  {size:>9,} rows, q={RARE!r}: index {results[size]['index']:8.1f} ms, "
                f"scan {results[size]['scan']:8.1f} ms"
            )
        biggest = max(sizes)
        short = measure(
            {"index": indexed},
            f"search-{biggest}",
            {"q": "qu", "epoch": 1, "step": 10, "limit": 50},
            reps,
        )
        print(f"  {biggest:>9,} rows, q='qu' in one round: {short['index']:.1f} ms")
        if not db.is_postgres:
            build_job(db, user_id, "search-tail", TAIL)  # not indexed: above the watermark
            tail = measure(servers, f"search-{biggest}", {"q": RARE, "limit": 50}, reps)
            print(
                f"  {biggest:>9,} rows, q={RARE!r} with {TAIL:,} rows awaiting the indexer: "
                f"index {tail['index']:.1f} ms, scan {tail['scan']:.1f} ms"
            )
        db.dispose()
    small, large = min(sizes), sorted(sizes)[1] if len(sizes) > 1 else min(sizes)
    ratio = results[large]["index"] / results[small]["index"]
    scan_ratio = results[large]["scan"] / results[small]["scan"]
    print(f"  index {large:,} vs {small:,} rows: {ratio:.1f}x (the scan: {scan_ratio:.1f}x)")
    print(f"  target <= 3x: {verdict(ratio <= 3)}")
    if 1_000_000 in results:
        ms = results[1_000_000]["index"]
        print(f"  target 1M rows under 50 ms ({ms:.1f} ms): {verdict(ms < 50)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,200000,1000000", help="job sizes in rows")
    parser.add_argument("--reps", type=int, default=15, help="requests per measurement")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="flbench-") as tmp:
        run_backend("SQLite", f"sqlite:///{Path(tmp) / 'search.db'}", sizes, args.reps)
    if args.no_postgres:
        return
    with postgres_database() as url:
        if url is None:
            print("PostgreSQL: not installed, skipped")
            return
        run_backend("PostgreSQL", url, sizes, args.reps)


if __name__ == "__main__":
    main()
