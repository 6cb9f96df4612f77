"""Disk per job and ingest speed: texts stored once (migration 0005) against the layout before it.

Targets (issue 14): a job of 200 samples x 50 rounds with 1,500-character prompts and
300-character ground truths (predictions ~50 characters: 18.5 MB of text sent, the issue's
job) takes at most 0.4x the raw text sent on disk, on SQLite and on PostgreSQL; ingest is no
slower than with the old layout.

Both layouts are measured in the same run: the old one is the server as it was just before
0005 (its source taken from git: `--baseline REV`, default the parent of the commit that added
0005), the new one this working tree (which includes the search index of 0006; its share is
printed). The same batches go to both servers through the SDK, interleaved batch by batch, and
are compared by their medians (this machine's speed drifts from second to second). Disk:
SQLite, the database's pages in use after a WAL checkpoint (the same as the file size on a
fresh database); PostgreSQL, `pg_total_relation_size` of every table (indexes and TOAST
included) after a VACUUM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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

from _common import running_server, verdict
from finetune_lab import FinetuneLabClient

ROOT = Path(__file__).resolve().parent.parent
SAMPLES, ROUNDS, BATCH_ROUNDS = 200, 50, 5  # batches of 1,000 rows: five rounds
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


@contextlib.contextmanager
def server_from(src: Path | None, database_url: str) -> Iterator[Any]:
    """A server running the code under `src` (None: this working tree)."""
    saved = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = str(src)
    try:
        with running_server(database_url) as server:
            yield server
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


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


def ingest_both(old: Any, new: Any, batches: list[list[dict[str, Any]]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"old": [], "new": []}
    with (
        FinetuneLabClient(api_key=old.key, base_url=old.url) as old_client,
        FinetuneLabClient(api_key=new.key, base_url=new.url) as new_client,
    ):
        jobs = {
            "old": (old_client, old_client.jobs.create(name="bench-storage").id),
            "new": (new_client, new_client.jobs.create(name="bench-storage").id),
        }
        for index, rows in enumerate(batches):
            order = ("old", "new") if index % 2 == 0 else ("new", "old")
            for name in order:
                client, job_id = jobs[name]
                started = time.perf_counter()
                client.training_predictions.create(job_id, rows)
                times[name].append(time.perf_counter() - started)
        for client, job_id in jobs.values():
            count = client.training_predictions.get(job_id, limit=1).total_count
            assert count == SAMPLES * ROUNDS, count
            page = client.training_predictions.get(job_id, limit=1).predictions[0]
            assert page.prompt == batches[0][0]["prompt"]
    return times


def run_backend(name: str, old_src: Path, urls: tuple[str, str], sized: Any, sent: int) -> None:
    """Each database first gets a warm-up job (not measured); the job's disk is what the
    database grew by while it was ingested."""
    batches = job_batches()
    with server_from(old_src, urls[0]) as old, server_from(None, urls[1]) as new:
        ingest_both(old, new, batches[:2])
        before = [sized(url) for url in urls]
        times = ingest_both(old, new, batches)
    after = [sized(url) for url in urls]
    old_job = after[0][0] - before[0][0]
    new_job = after[1][0] - before[1][0]
    parts = {key: value - before[1][1].get(key, 0) for key, value in after[1][1].items()}
    search = sum(size for part, size in parts.items() if "_fts" in part or "trgm" in part)
    print(f"{name}: {SAMPLES} samples x {ROUNDS} rounds, {sent / 1e6:.1f} MB of text sent")
    for label, size in (
        ("old layout (texts in every row)", old_job),
        ("texts stored once", new_job),
    ):
        print(f"  {label:<31}: {size / 1e6:6.1f} MB = {size / sent:.2f}x the text")
    print(f"    of which the search index    : {search / 1e6:6.1f} MB")
    biggest = sorted(parts.items(), key=lambda kv: -kv[1])[:7]
    print("    largest parts: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in biggest))
    old_rate = 1_000 / statistics.median(times["old"])
    new_rate = 1_000 / statistics.median(times["new"])
    print(
        f"  ingest (SDK over HTTP, median of {len(batches)} batches of 1,000): "
        f"old {old_rate:,.0f}/s, new {new_rate:,.0f}/s = {new_rate / old_rate:.2f}x"
    )
    print(f"  target disk <= 0.4x the text sent: {verdict(new_job / sent <= 0.4)}")
    print(f"  target ingest no slower than the old layout: {verdict(new_rate >= 0.95 * old_rate)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision of the old layout (default: before 0005)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    revision = args.baseline or baseline_revision()
    sent = text_chars(job_batches())
    with source_tree(revision) as old_src, tempfile.TemporaryDirectory(prefix="flbench-") as tmp:
        files = (Path(tmp) / "old.db", Path(tmp) / "new.db")
        run_backend(
            "SQLite",
            old_src,
            (f"sqlite:///{files[0]}", f"sqlite:///{files[1]}"),
            lambda url: sqlite_size(Path(url.removeprefix("sqlite:///"))),
            sent,
        )
        if args.no_postgres:
            return
        with postgres_cluster() as create:
            if create is None:
                print("PostgreSQL: not installed, skipped")
                return
            run_backend("PostgreSQL", old_src, (create(), create()), postgres_size, sent)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Any]:
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from _support.postgres import LocalCluster, PostgresUnavailable

    try:
        cluster = LocalCluster()
    except PostgresUnavailable:
        yield None
        return
    try:
        yield cluster.create_database
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
