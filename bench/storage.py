"""Disk per job and ingest speed: texts stored once (migration 0005) against the layout before it.

Targets (issue 14): a job of 200 samples x 50 rounds with 1,500-character prompts and
300-character ground truths (predictions ~50 characters: 18.5 MB of text sent, the issue's
job) takes at most 0.4x the raw text sent on disk, on SQLite and on PostgreSQL; ingest is no
slower than with the old layout.

Three servers are measured in the same run: the old layout (the server as it was just before
0005, its source taken from git: `--baseline REV`, default the parent of the commit that added
0005); this working tree on a database whose search index (0006) the bench drops, i.e. texts
stored once alone; and this working tree as it is (texts once and the search index). The same
batches go to all three through the SDK, interleaved batch by batch (the job is sent three
times), and are compared by their medians (this machine's speed drifts from second to
second). Disk:
SQLite, the database's pages in use after a WAL checkpoint (the same as the file size on a
fresh database); PostgreSQL, `pg_total_relation_size` of every table (indexes and TOAST
included) after a VACUUM.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sqlite3
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

from _common import postgres_cluster, running_server, verdict
from finetune_lab import FinetuneLabClient
from finetune_lab.server.db import Database

ROOT = Path(__file__).resolve().parent.parent
SAMPLES, ROUNDS, BATCH_ROUNDS = 200, 50, 5  # batches of 1,000 rows: five rounds
JOB_REPEATS = 3  # the job is sent this many times for the ingest medians (disk: the first)
PROMPT_CHARS, TRUTH_CHARS, PREDICTION_CHARS = 1_500, 300, 50
WORDS = tuple(
    [
        "the",
        "a",
        "model",
        "answer",
        "question",
        "context",
        "because",
        "therefore",
        "value",
        "table",
        "row",
        "column",
        "data",
        "train",
        "epoch",
        "loss",
        "rate",
        "gradient",
        "batch",
        "sample",
        "prompt",
        "output",
        "token",
        "weight",
        "layer",
        "result",
        "document",
        "passage",
        "retrieve",
        "summary",
        "instruction",
        "assistant",
        "user",
        "system",
        "reason",
        "step",
    ]
)


def _words(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def job_batches() -> list[list[dict[str, Any]]]:
    rng = random.Random(14)
    prompts = [_words(rng, PROMPT_CHARS) for _ in range(SAMPLES)]
    truths = [_words(rng, TRUTH_CHARS) for _ in range(SAMPLES)]
    batches = []
    for first in range(0, ROUNDS, BATCH_ROUNDS):
        batches.append(
            [
                {
                    "epoch": r,
                    "step": (r + 1) * 100,
                    "sample_index": i,
                    "prompt": prompts[i],
                    "ground_truth": truths[i],
                    "prediction": _words(rng, PREDICTION_CHARS),
                }
                for r in range(first, first + BATCH_ROUNDS)
                for i in range(SAMPLES)
            ]
        )
    return batches


def text_chars(batches: list[list[dict[str, Any]]]) -> int:
    fields = ("prompt", "ground_truth", "prediction")
    return sum(len(row[name]) for rows in batches for row in rows for name in fields)


def baseline_revision() -> str:
    added = subprocess.run(
        [
            "git",
            "log",
            "--diff-filter=A",
            "--format=%H",
            "-1",
            "--",
            "src/finetune_lab/server/db/migrations/versions/0005_texts_once.py",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not added:
        raise SystemExit("cannot find the commit that added migration 0005: pass --baseline")
    return f"{added}^"


@contextlib.contextmanager
def source_tree(revision: str) -> Iterator[Path]:
    """`src/` of `revision`, exported from git into a temporary folder."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "src"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tempfile.TemporaryDirectory(prefix="flbench-src-") as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp) / "src"


def sqlite_size(path: Path) -> tuple[int, dict[str, int]]:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        used = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        parts = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
    finally:
        conn.close()
    return (used - free) * page, parts


def postgres_size(database_url: str) -> tuple[int, dict[str, int]]:
    import psycopg
    from sqlalchemy.engine import make_url

    libpq = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        # Tables (heap and TOAST) and their indexes: together pg_total_relation_size.
        rows = conn.execute(
            "SELECT c.relname, CASE c.relkind WHEN 'r' THEN pg_table_size(c.oid) "
            "ELSE pg_relation_size(c.oid) END FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')"
        ).fetchall()
    parts = {name: int(size) for name, size in rows}
    return sum(parts.values()), parts


def ingest_all(
    servers: dict[str, Any], batches: list[list[dict[str, Any]]]
) -> dict[str, list[float]]:
    """The same batches to every server, batch by batch, rotating who goes first."""
    times: dict[str, list[float]] = {name: [] for name in servers}
    with contextlib.ExitStack() as stack:
        jobs = {}
        for name, server in servers.items():
            client = stack.enter_context(FinetuneLabClient(api_key=server.key, base_url=server.url))
            jobs[name] = (client, client.jobs.create(name="bench-storage").id)
        names = list(servers)
        for index, rows in enumerate(batches):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                client, job_id = jobs[name]
                started = time.perf_counter()
                client.training_predictions.create(job_id, rows)
                times[name].append(time.perf_counter() - started)
        for client, job_id in jobs.values():
            page = client.training_predictions.get(job_id, limit=1)
            assert page.total_count == sum(len(rows) for rows in batches), page.total_count
            assert page.predictions[0].prompt == batches[0][0]["prompt"]
    return times


def drop_search_index(database_url: str) -> None:
    """The 0005 layout alone: this database loses 0006's index (the server keeps running)."""
    db = Database(database_url)
    try:
        with db.write() as conn:
            if db.is_sqlite:  # (its server's indexer then logs that it cannot run)
                for fts in ("predictions_fts", "prediction_texts_fts"):
                    for event in ("insert", "delete", "update"):
                        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {fts}_{event}")
                    conn.exec_driver_sql(f"DROP TABLE {fts}")
                conn.exec_driver_sql("DROP TABLE IF EXISTS search_watermarks")  # 0010
            else:
                for index in ("ix_predictions_prediction_trgm", "ix_prediction_texts_text_trgm"):
                    conn.exec_driver_sql(f"DROP INDEX {index}")
    finally:
        db.dispose()


def wait_indexed(database_url: str) -> None:
    """SQLite: until the server's indexer has reached the last row (0010's watermarks)."""
    db = Database(database_url)
    try:
        while db.is_sqlite:
            with db.read() as conn:
                behind = conn.exec_driver_sql(
                    "SELECT count(*) FROM search_watermarks w WHERE w.watermark < CASE w.source "
                    "WHEN 'predictions' THEN (SELECT max(id) FROM predictions) "
                    "ELSE (SELECT max(id) FROM prediction_texts) END"
                ).scalar()
            if not behind:
                return
            time.sleep(0.05)
    finally:
        db.dispose()


LABELS = {
    "old": "old layout (texts in every row)",
    "once": "texts stored once (0005)",
    "head": "and the search index (0006)",
}


def run_backend(name: str, old_src: Path, urls: list[str], sized: Any, sent: int) -> None:
    """Three databases: the old server's, this tree's without the search index, this tree's.
    Each first gets a warm-up job (not measured); a job's disk is what its database grew by
    while it was ingested."""
    batches = job_batches()
    by_name = dict(zip(LABELS, urls, strict=True))
    with contextlib.ExitStack() as stack:
        servers = {
            label: stack.enter_context(running_server(url, src=old_src if label == "old" else None))
            for label, url in by_name.items()
        }
        drop_search_index(by_name["once"])
        ingest_all(servers, batches[:2])
        before = {label: sized(url) for label, url in by_name.items()}
        times = ingest_all(servers, batches)
        wait_indexed(by_name["head"])  # SQLite indexes behind the ingest (0010): all of it
        after = {label: sized(url) for label, url in by_name.items()}
        for _ in range(JOB_REPEATS - 1):  # more batches for the ingest medians
            for label, values in ingest_all(servers, batches).items():
                times[label] += values
    print(f"{name}: {SAMPLES} samples x {ROUNDS} rounds, {sent / 1e6:.1f} MB of text sent")
    rates = {label: 1_000 / statistics.median(values) for label, values in times.items()}
    disk = {label: after[label][0] - before[label][0] for label in LABELS}
    for label, title in LABELS.items():
        print(
            f"  {title:<32}: {disk[label] / 1e6:5.1f} MB = {disk[label] / sent:.2f}x the text; "
            f"ingest {rates[label]:7,.0f}/s = {rates[label] / rates['old']:.2f}x the old layout"
        )
    parts = {k: v - before["head"][1].get(k, 0) for k, v in after["head"][1].items()}
    biggest = sorted(parts.items(), key=lambda kv: -kv[1])[:8]
    print("    head's largest parts: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in biggest))
    print(f"  (SDK over HTTP, median of {len(times['old'])} interleaved batches of 1,000 rows)")
    for label in ("once", "head"):
        ratio, speed = disk[label] / sent, rates[label] / rates["old"]
        print(
            f"  target {label}: disk <= 0.4x the text {verdict(ratio <= 0.4)}, "
            f"ingest no slower {verdict(speed >= 0.95)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision of the old layout (default: before 0005)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    revision = args.baseline or baseline_revision()
    sent = text_chars(job_batches())
    with source_tree(revision) as old_src, tempfile.TemporaryDirectory(prefix="flbench-") as tmp:
        run_backend(
            "SQLite",
            old_src,
            [f"sqlite:///{Path(tmp) / label}.db" for label in LABELS],
            lambda url: sqlite_size(Path(url.removeprefix("sqlite:///"))),
            sent,
        )
        if args.no_postgres:
            return
        with postgres_cluster() as create:
            if create is None:
                print("PostgreSQL: not installed, skipped")
                return
            urls = [create() for _ in LABELS]
            run_backend("PostgreSQL", old_src, urls, postgres_size, sent)


if __name__ == "__main__":
    main()
