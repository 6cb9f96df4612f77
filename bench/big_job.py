"""A job of the size users reach (default 10,000,000 predictions) on PostgreSQL: disk size and
read latency against the same reads on a 10,000-prediction job.

Both jobs have the same rounds (`--rounds`, 10 per epoch); the big one has rows/rounds samples
per round, the small one 10,000/rounds. Reads, each through the real server over HTTP, medians
of both jobs alternated call by call: `/trends`, `/epochs`, the last cursor page, the matrix
view (CER; the first 100 samples, the first 10 and the last 10, each x every round) and `q` for
a word found in exactly one row.

The fill skips HTTP to reach 10M in minutes: rows are made and scored in this process with the
server's scoring (`scoring.score`), written with COPY into the tables the server writes
(`write_rows`, the one function to adapt when the storage layout changes): texts once per job
(migration 0005: the round's prompts and ground truths the job has not stored yet go into
`prediction_texts`, keyed by the server's own `texts.digest`), then the round's rows with the
texts' ids, then the sample indexes the job has not had yet into `job_samples` with their count
on the job (migration 0011); the pg_trgm GIN indexes of migration 0006 are kept by COPY itself
(the bench checks they exist). Each round's rollup is computed from its scored rows with the
server's own `RoundTotals`, exactly as ingest would store it. Not written: stream events (no
reader here needs them). A throwaway PostgreSQL 15 cluster (the test suite's harness: fsync
off) holds both jobs. Disk size counts `predictions` and the job's share of `prediction_texts`
(`job_samples` adds one narrow row per sample, not per prediction).

    PYTHONPATH=src .venv/bin/python bench/big_job.py               # 10M rows
    PYTHONPATH=src .venv/bin/python bench/big_job.py --rows 200000  # smoke run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

import httpx
import psycopg
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from _common import paired_medians, postgres_database, running_server
from finetune_lab.scoring import score
from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import jobs, predictions, round_rollups
from finetune_lab.server.services.queries import encode_cursor
from finetune_lab.server.services.rollups import RoundTotals
from finetune_lab.server.services.search import PG_INDEXES
from finetune_lab.server.services.texts import TEXT_FIELDS, digest

SMALL_ROWS = 10_000
ROUNDS_PER_EPOCH = 10
STEPS_PER_ROUND = 50
RARE_WORD = "quetzalcoatl"  # in exactly one prediction of each job
REPEAT = 15
SLOW_S = 1.0  # a read slower than this on the big job is timed SLOW_REPEAT times
SLOW_REPEAT = 3
PRED = "/api/training/predictions"
COLUMNS = [c.name for c in predictions.c if c.name != "id"]
CREATED_AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def round_rows(job_id: str, user_id: int, round_index: int, samples: int) -> list[dict[str, Any]]:
    """One round's rows as ingest would store them (scored; no validators configured)."""
    epoch, step = round_index // ROUNDS_PER_EPOCH, round_index * STEPS_PER_ROUND
    rows = []
    for i in range(samples):
        truth = f"The answer is {i + 7}."
        prediction = f"The answer is {i + 7 + (i + round_index) % 3}."
        if round_index == 1 and i == samples // 2:
            prediction += f" {RARE_WORD}"
        exact, cer, ratio, overlap = score(prediction, truth)
        rows.append(
            {
                "job_id": job_id,
                "user_id": user_id,
                "epoch": epoch,
                "step": step,
                "sample_index": i,
                "prompt": f"Question {i}: what is {i} plus 7? Answer in one sentence.",
                "ground_truth": truth,
                "prediction": prediction,
                "created_at": CREATED_AT,
                "exact_match": exact,
                "char_error_rate": cer,
                "length_ratio": ratio,
                "word_overlap": overlap,
                "prompt_id": f"{i:064x}",
                "source_index": i,
                "sample_source": "bench",
                "sample_source_id": None,
                "prompt_tokens": 14,
                "completion_tokens": 5,
                "total_tokens": 19,
                "latency_ms": 3.5,
                "max_new_tokens": 64,
                "do_sample": False,
                "validation_pass": None,
                "validation_kind": None,
                "validation_errors": None,
                "metrics": None,
            }
        )
    return rows


def _binary_copy(
    conn: psycopg.Connection[Any], table: str, columns: list[str], rows: Iterable[Sequence[Any]]
) -> None:
    """One binary COPY of `rows` (tuples in `columns` order) into `table`."""
    types = dict(
        conn.execute(
            "SELECT attname, atttypid::regtype::text FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        ).fetchall()
    )
    copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
        copy.set_types([types[name] for name in columns])
        for values in rows:
            copy.write_row(values)


def write_rows(
    conn: psycopg.Connection[Any], rows: list[dict[str, Any]], text_ids: dict[str, int]
) -> None:
    """Store scored rows of one job where the server keeps them: the texts the job has not
    stored yet (`text_ids`, text -> id, is what it has; updated here) with one binary COPY into
    `prediction_texts`, their ids read back, then one binary COPY of the rows with the ids into
    `predictions`."""
    job_id = rows[0]["job_id"]
    new = {
        text: digest(text)
        for row in rows
        for field in TEXT_FIELDS
        if (text := row[field]) is not None and text not in text_ids
    }
    if new:
        _binary_copy(
            conn,
            "prediction_texts",
            ["job_id", "digest", "text"],
            [(job_id, key, text) for text, key in new.items()],
        )
        by_digest = dict(
            conn.execute(
                "SELECT digest, id FROM prediction_texts WHERE job_id = %s AND digest = ANY(%s)",
                (job_id, list(new.values())),
            ).fetchall()
        )
        text_ids.update((text, by_digest[key]) for text, key in new.items())
    for row in rows:
        for field, id_column in TEXT_FIELDS.items():
            text = row[field]
            row[id_column] = None if text is None else text_ids[text]
    _binary_copy(conn, "predictions", COLUMNS, map(itemgetter(*COLUMNS), rows))
    # The job's sample indexes (migration 0011), as ingest keeps them.
    known = {
        int(i)
        for (i,) in conn.execute(
            "SELECT sample_index FROM job_samples WHERE job_id = %s", (job_id,)
        )
    }
    new_samples = sorted({row["sample_index"] for row in rows} - known)
    if new_samples:
        _binary_copy(
            conn, "job_samples", ["job_id", "sample_index"], [(job_id, i) for i in new_samples]
        )
        conn.execute(
            "UPDATE jobs SET distinct_samples = distinct_samples + %s WHERE id = %s",
            (len(new_samples), job_id),
        )


def fill(db: Database, libpq_url: str, job_id: str, rows: int, rounds: int) -> float:
    """Fill `job_id` with `rows` predictions over `rounds` rounds; returns rows/s."""
    samples = rows // rounds
    with db.read() as conn:
        user_id = int(conn.execute(select(jobs.c.user_id).where(jobs.c.id == job_id)).scalar_one())
    started = time.perf_counter()
    text_ids: dict[str, int] = {}
    with psycopg.connect(libpq_url, autocommit=False) as conn:
        for round_index in range(rounds):
            scored = round_rows(job_id, user_id, round_index, samples)
            write_rows(conn, scored, text_ids)
            totals = RoundTotals.of_predictions(scored)
            rollup = totals.to_row(job_id, scored[0]["step"], scored[0]["epoch"])
            with db.write() as db_conn:  # the rollup as refresh_rounds stores it
                db_conn.execute(insert(round_rollups), [rollup])
            conn.commit()
            if round_index % max(1, rounds // 10) == 0:
                done = (round_index + 1) * samples
                print(f"  {job_id}: {done:,} rows, {done / (time.perf_counter() - started):,.0f}/s")
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE predictions")
        conn.execute("VACUUM ANALYZE prediction_texts")
        conn.execute("VACUUM ANALYZE round_rollups")
        conn.execute("VACUUM ANALYZE job_samples")
    return samples * rounds / (time.perf_counter() - started)


def disk(libpq_url: str) -> dict[str, int]:
    """Bytes of the predictions and texts tables, of their indexes (the pg_trgm ones also
    apart), of the rollups and of the whole database."""
    with psycopg.connect(libpq_url) as conn:
        sizes = conn.execute(
            "SELECT pg_table_size('predictions'), pg_table_size('prediction_texts'),"
            " pg_indexes_size('predictions') + pg_indexes_size('prediction_texts'),"
            " (SELECT coalesce(sum(pg_relation_size(indexname::regclass)), 0)::bigint"
            "  FROM pg_indexes WHERE indexname = ANY(%s)),"
            " pg_total_relation_size('round_rollups'), pg_database_size(current_database())",
            (list(PG_INDEXES),),
        ).fetchone()
    assert sizes is not None
    names = ("table", "texts", "indexes", "trigram", "rollups", "database")
    return dict(zip(names, sizes, strict=True))


def search_indexes(libpq_url: str) -> list[str]:
    """The pg_trgm GIN indexes migration 0006 created in this database."""
    with psycopg.connect(libpq_url) as conn:
        found = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE indexname = ANY(%s) ORDER BY 1",
            (list(PG_INDEXES),),
        ).fetchall()
    return [name for (name,) in found]


def reads(http: httpx.Client, rows: int, rounds: int) -> list[tuple[str, float, float]]:
    """(read, small job ms, big job ms) for each read."""

    def getter(path: str, **params: Any) -> Callable[[], None]:
        def call() -> None:
            http.get(path, params=params).raise_for_status()

        return call

    def last_page(total: int) -> dict[str, Any]:
        """The page of the job's last 50 rows: the cursor names the row before them."""
        round_index, sample = divmod(total - 51, total // rounds)
        epoch, step = round_index // ROUNDS_PER_EPOCH, round_index * STEPS_PER_ROUND
        return {"limit": 50, "cursor": encode_cursor(epoch, step, sample)}

    for job_id, total in (("small", SMALL_ROWS), ("big", rows)):
        found = http.get(f"{PRED}/{job_id}", params={"q": RARE_WORD}).json()
        assert found["total_count"] == 1, found["total_count"]
        page = http.get(f"{PRED}/{job_id}", params=last_page(total)).json()
        assert len(page["predictions"]) == 50 and page["next_cursor"] is None, job_id
        grid = http.get(f"{PRED}/{job_id}/matrix", params={"metric": "char_error_rate"}).json()
        assert grid["total_samples"] == total // rounds, (job_id, grid["total_samples"])
    plans: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("/trends", "/trends", {}, {}),
        ("/epochs", "/epochs", {}, {}),
        ("last cursor page", "", last_page(SMALL_ROWS), last_page(rows)),
        ("matrix, 100 samples", "/matrix", {"metric": "char_error_rate", "limit": 100}, {}),
        # The small job's page above holds its 10 samples: here the big job's page has as many.
        ("matrix, 10 samples", "/matrix", {"metric": "char_error_rate", "limit": 10}, {}),
        (
            "matrix, last page",
            "/matrix",
            {"metric": "char_error_rate", "limit": 10, "offset": SMALL_ROWS // rounds - 10},
            {"metric": "char_error_rate", "limit": 10, "offset": rows // rounds - 10},
        ),
        ("q, rare word", "", {"q": RARE_WORD, "limit": 50}, {}),
    ]
    results = []
    for name, suffix, small_params, big_params in plans:
        big_call = getter(f"{PRED}/big{suffix}", **(big_params or small_params))
        started = time.perf_counter()
        big_call()
        slow = time.perf_counter() - started > SLOW_S  # a scan of the big job: fewer repeats
        small, big = paired_medians(
            getter(f"{PRED}/small{suffix}", **small_params),
            big_call,
            SLOW_REPEAT if slow else REPEAT,
            warmup=0 if slow else 2,
        )
        results.append((name, small * 1e3, big * 1e3))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="predictions in the big job")
    parser.add_argument("--rounds", type=int, default=1_000, help="rounds of both jobs")
    args = parser.parse_args()
    if args.rows % args.rounds or SMALL_ROWS % args.rounds:
        parser.error(f"--rounds must divide --rows and {SMALL_ROWS:,}")
    with postgres_database() as database_url:
        if database_url is None:
            print("big job: skipped, PostgreSQL 15 binaries not found")
            return
        libpq_url = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        with running_server(database_url, env={"FINETUNE_LAB_RATE_LIMIT": "off"}) as server:
            headers = {"X-API-Key": server.key}
            with httpx.Client(base_url=server.url, headers=headers, timeout=600) as http:
                for job_id in ("small", "big"):
                    http.post("/api/training/jobs", json={"id": job_id}).raise_for_status()
                indexes = search_indexes(libpq_url)
                print(f"big job: search indexes {', '.join(indexes) or 'none'}")
                assert len(indexes) == len(PG_INDEXES), "migration 0006 made no pg_trgm index"
                db = Database(database_url)
                empty = disk(libpq_url)
                fill(db, libpq_url, "small", SMALL_ROWS, args.rounds)
                before = disk(libpq_url)
                print(f"big job: filling {args.rows:,} predictions over {args.rounds:,} rounds")
                rate = fill(db, libpq_url, "big", args.rows, args.rounds)
                db.dispose()
                after = disk(libpq_url)
                total = http.get(f"{PRED}/big", params={"limit": 1}).json()["total_count"]
                assert total == args.rows, total
                results = reads(http, args.rows, args.rounds)
    report(args.rows, rate, [empty, before, after], results)


def report(
    rows: int, rate: float, sizes: list[dict[str, int]], results: list[tuple[str, float, float]]
) -> None:
    print(f"big job (PostgreSQL): {rows:,} predictions, direct COPY at {rate:,.0f} rows/s")
    for (job, count), start, end in zip(
        (("small", SMALL_ROWS), ("big", rows)), sizes[:-1], sizes[1:], strict=True
    ):
        table, texts, indexes, trigram = (
            end[key] - start[key] for key in ("table", "texts", "indexes", "trigram")
        )
        print(
            f"  disk, {job} job: predictions {table / 2**20:,.1f} MiB + texts"
            f" {texts / 2**20:,.1f} MiB + indexes {indexes / 2**20:,.1f} MiB (trigram"
            f" {trigram / 2**20:,.1f} MiB) = {(table + texts + indexes) / count:,.0f} bytes"
            " per prediction"
        )
    print(f"  database in all: {sizes[-1]['database'] / 2**30:,.2f} GiB")
    for name, small, big in results:
        print(
            f"  {name:<20} {SMALL_ROWS:,}-row job {small:8.1f} ms"
            f"  {rows:,}-row job {big:8.1f} ms  ratio {big / small:7.1f}x"
        )


if __name__ == "__main__":
    main()
