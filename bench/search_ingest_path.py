"""What the search index costs the ingest path itself (SQLite): the server's ingest function,
in this process, into two databases batch by batch, interleaved: one at revision 0009 (FTS5
triggers index every insert in the ingest transaction) and one at head (0010: ingest writes
no index entries; the indexer's catch-up is timed separately, chunk by chunk, as the server
runs it). Same code, same rows (every prompt new, as bench/ingest.py), scoring inline: the
difference is the index work alone. No HTTP, so the ratio is of the server's own work.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from sqlalchemy import insert

from _common import prediction_rows
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.tables import jobs, users
from finetune_lab.server.services import ingest
from finetune_lab.server.services.scoring_pool import PoolSettings, ScoringPool
from finetune_lab.server.services.search_indexer import IndexerSettings, SearchIndexer
from finetune_lab.server.services.tokens import utcnow

BATCH = 1_000


def database(path: Path, revision: str) -> Database:
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine, revision)
    now = utcnow()
    with db.write() as conn:
        conn.execute(insert(users).values(id=1, name="bench", created_at=now))
        conn.execute(
            insert(jobs).values(
                id="j", user_id=1, status="running", config={}, created_at=now, updated_at=now
            )
        )
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    principal = Principal(1, "bench", "api_key", ("all",), 1, "x")
    scoring = ScoringPool(
        PoolSettings(workers=0, row_s=1, batch_s=10, schema_check_s=1, inline_s=1)
    )
    with tempfile.TemporaryDirectory(prefix="flbench-") as tmp:
        dbs = {"0009 (FTS5 triggers)": database(Path(tmp) / "old.db", "0009")}
        dbs["head (0010)"] = database(Path(tmp) / "new.db", "head")
        indexer = SearchIndexer(dbs["head (0010)"], IndexerSettings())
        times: dict[str, list[float]] = {name: [] for name in [*dbs, "indexer catch-up"]}
        for step in range(args.batches + 3):
            body = orjson.dumps({"predictions": prediction_rows(step, step // 10, BATCH)})
            for name, db in dbs.items():
                items = ingest.parse_batch(body)
                started = time.perf_counter()
                ingest.ingest(db, principal, "j", items, scoring)
                took = time.perf_counter() - started
                if step >= 3:
                    times[name].append(took)
            started = time.perf_counter()
            while indexer.step():
                pass
            if step >= 3:
                times["indexer catch-up"].append(time.perf_counter() - started)
    print(f"server ingest function, {args.batches} batches x {BATCH} (every prompt new), medians")
    for name, values in times.items():
        q1, q2, q3 = statistics.quantiles(values, n=4)
        print(
            f"  {name:22}: {BATCH / q2:8,.0f} rows/s  "
            f"(batch ms p25 {q1 * 1e3:6.1f} p50 {q2 * 1e3:6.1f} p75 {q3 * 1e3:6.1f})"
        )
    old, new = (statistics.median(times[name]) for name in dbs)
    print(f"  ingest head / 0009: {old / new:4.2f}x the rate")
    both = statistics.median(
        [a + b for a, b in zip(times["head (0010)"], times["indexer catch-up"], strict=True)]
    )
    print(
        f"  head ingest + its indexing, per batch: {both * 1e3:.1f} ms vs 0009 {old * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
