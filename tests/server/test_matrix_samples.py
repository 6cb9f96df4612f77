"""The matrix's page of samples and their count come from `job_samples` (kept at ingest, issue
14): its answers must be byte for byte those of the implementation it replaced, which read the
page with a DISTINCT over every row of the job. That implementation is kept here as the
reference and run in-process on the server's own database, page by page to the end, for every
metric; then what keeps the table exact: re-sends, concurrent writers, job deletion, and the
migration of a database filled by 0009."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from _support.appserver import Backend, ServerHandle
from _support.infra import MakeServer
from finetune_lab.schema import MAX_INT
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.migrate import alembic_config
from finetune_lab.server.db.tables import jobs, prediction_texts, predictions, users
from finetune_lab.server.responses import JSONBytesResponse
from finetune_lab.server.services import matrix
from finetune_lab.server.services.texts import digest

from ._helpers import JOBS, PRED, create_job, ingest, row

CUSTOM = ("bleu", "metrics.exact_match")  # job_rows' custom metrics
LIMITS = (1, 3, 100)
# Sparse, unordered, far apart, up to the largest index the API takes.
SAMPLES = [34, 0, 5, 2, 1, 21, 13, 8, 1_000_000, 2**53 + 1, MAX_INT]
ROUNDS = [(0, 0), (0, 10), (1, 20), (1, 30), (2, 40)]


def distinct_scan_page(
    conn: sa.Connection, job_id: str, limit: int, offset: int
) -> tuple[list[int], int]:
    """The page and count as the matrix read them before `job_samples` (the reference)."""
    p = predictions.c
    known = sa.select(p.sample_index).where(p.job_id == job_id).distinct().subquery()
    rows = conn.execute(
        sa.select(known.c.sample_index, sa.func.count().over())
        .order_by(known.c.sample_index)
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        return [int(r[0]) for r in rows], int(rows[0][1])
    count = sa.select(sa.func.count(sa.distinct(p.sample_index))).where(p.job_id == job_id)
    return [], int(conn.scalar(count) or 0)


def reference_body(db: Database, job_id: str, metric: str, limit: int, offset: int) -> bytes:
    """The bytes the route sent before: the same service with the reference sample page."""
    with db.read() as conn:
        user_id = conn.execute(sa.select(jobs.c.user_id).where(jobs.c.id == job_id)).scalar_one()
    principal = Principal(int(user_id), "ref", "api_key", ("all",), 0, "")
    with mock.patch.object(matrix, "_sample_page", distinct_scan_page):
        answer = matrix.matrix(db, principal, job_id, metric, limit=limit, offset=offset)
    return bytes(JSONBytesResponse(answer).body)


def assert_same_as_reference(
    http: httpx.Client,
    db: Database,
    job_id: str,
    custom: tuple[str, ...] = (),
    limits: tuple[int, ...] = LIMITS,
) -> int:
    """Walk every page of every built-in metric and the `custom` ones at several page sizes
    (and one past the end); returns the job's sample count."""
    total = -1
    for metric in (*matrix.BUILT_IN, *custom):
        for limit in limits:
            offset = 0
            while True:
                params: dict[str, str | int] = {"metric": metric, "limit": limit, "offset": offset}
                resp = http.get(f"{PRED}/{job_id}/matrix", params=params)
                assert resp.status_code == 200, resp.text
                assert resp.content == reference_body(db, job_id, metric, limit, offset), params
                body = resp.json()
                total = body["total_samples"]
                if not body["samples"]:
                    assert offset >= total
                    break
                offset += limit
    return total


@pytest.fixture
def db(server: ServerHandle) -> Iterator[Database]:
    database = Database(server.database_url)
    yield database
    database.dispose()


def job_rows(samples: list[int], rounds: list[tuple[int, int]], tag: str = "") -> list[dict]:
    """Every sample in every round but a few holes; scores, validation and custom metrics vary,
    one custom metric named like a built-in."""
    rows = []
    for r, (epoch, step) in enumerate(rounds):
        for n, index in enumerate(samples):
            if (n + r) % 4 == 3:  # a hole: this sample skips this round
                continue
            rows.append(
                row(
                    epoch,
                    step,
                    index,
                    prediction=f"answer {(n * r) % 3}{tag}",
                    ground_truth=None if n % 5 == 4 else "answer 1",
                    prompt_id=f"p{index}" if n % 3 else None,
                    metrics={"bleu": n / 10 + r, "exact_match": r / 7} if n % 2 else None,
                )
            )
    return rows


def test_matrix_answers_are_byte_identical_to_the_distinct_scan(
    http: httpx.Client, db: Database, unique_job_id: str
) -> None:
    create_job(http, unique_job_id, config={"predictions": {"validators": {"json_parse": True}}})
    # Another job of the same user with overlapping and other sample indexes: never counted.
    neighbour = f"{unique_job_id}-n"
    create_job(http, neighbour)
    ingest(http, neighbour, job_rows([0, 3, 4, 99, 2**40], ROUNDS[:2]))
    rows = job_rows(SAMPLES, ROUNDS)
    for start in range(0, len(rows), 7):  # small batches, in an order that adds samples late
        ingest(http, unique_job_id, rows[::-1][start : start + 7])
    assert assert_same_as_reference(http, db, unique_job_id, CUSTOM) == len(SAMPLES)
    # Re-sends (new answers, in-batch duplicates): samples and their count do not move.
    resent = job_rows(SAMPLES[:4], ROUNDS[1:3], tag=" again")
    ingest(http, unique_job_id, resent + resent[:2])
    assert assert_same_as_reference(http, db, unique_job_id, CUSTOM) == len(SAMPLES)
    # A new sample in an old round, and a new round with only old samples.
    ingest(http, unique_job_id, [row(0, 10, 7), *job_rows(SAMPLES[2:5], [(3, 50)])])
    assert assert_same_as_reference(http, db, unique_job_id, CUSTOM) == len(SAMPLES) + 1
    assert assert_same_as_reference(http, db, neighbour, CUSTOM) == 5


def test_an_empty_job_and_a_page_past_the_end(
    http: httpx.Client, db: Database, unique_job_id: str
) -> None:
    create_job(http, unique_job_id)
    assert assert_same_as_reference(http, db, unique_job_id) == 0
    ingest(http, unique_job_id, [row(0, 1, 5)])
    far: dict[str, str | int] = {"metric": "exact_match", "offset": MAX_INT}
    body = http.get(f"{PRED}/{unique_job_id}/matrix", params=far).json()
    assert body["samples"] == [] and body["total_samples"] == 1


def test_concurrent_writers_count_each_sample_once(
    http: httpx.Client, db: Database, unique_job_id: str
) -> None:
    """Four writers add overlapping new samples at once: every index is stored and counted
    once (the primary key and the job's writers taking turns)."""
    create_job(http, unique_job_id)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            with httpx.Client(base_url=str(http.base_url), headers=http.headers) as own:
                for b in range(5):
                    first = (w + b) * 40  # each range overlaps the next writer's
                    batch = [row(w, w * 10 + b, i) for i in range(first, first + 80)]
                    ingest(own, unique_job_id, batch)
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    body = http.get(f"{PRED}/{unique_job_id}/matrix", params={"metric": "exact_match"}).json()
    assert body["total_samples"] == len(range(0, (3 + 4) * 40 + 80)) == 360
    assert assert_same_as_reference(http, db, unique_job_id, limits=(100, 1000)) == 360


def test_a_deleted_job_takes_its_samples(
    http: httpx.Client, db: Database, unique_job_id: str
) -> None:
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, job_rows(SAMPLES, ROUNDS[:2]))
    assert http.delete(f"{JOBS}/{unique_job_id}").status_code == 200
    with db.read() as conn:
        left = conn.scalar(
            sa.text("SELECT count(*) FROM job_samples WHERE job_id = :j"), {"j": unique_job_id}
        )
    assert left == 0
    # The same id again starts from nothing: only the new job's samples are there.
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(0, 1, 3), row(0, 1, 4)])
    assert assert_same_as_reference(http, db, unique_job_id) == 2


# -- a database filled by 0009 ------------------------------------------------------------


def _fill_0009(url: str) -> None:
    """Two users' jobs written as 0009's server stored them (texts once), one job empty."""
    db = Database(url)
    upgrade(db.engine, "0009")
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    old_jobs = sa.table(
        "jobs", *(sa.column(c.name, c.type) for c in jobs.c if c.name != "distinct_samples")
    )
    with db.write() as conn:
        conn.execute(
            sa.insert(users),
            [
                {"id": 1, "name": "ann", "created_at": now},
                {"id": 2, "name": "bob", "created_at": now},
            ],
        )
        conn.execute(
            sa.insert(old_jobs),
            [
                {
                    "id": job_id,
                    "user_id": uid,
                    "status": "running",
                    "config": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for job_id, uid in (("old-a", 1), ("old-b", 2), ("old-empty", 1))
            ],
        )
        for job_id, samples in (("old-a", SAMPLES), ("old-b", [0, 4, 9])):
            text_id = conn.execute(
                sa.insert(prediction_texts)
                .values(job_id=job_id, digest=digest("q"), text="q")
                .returning(prediction_texts.c.id)
            ).scalar_one()
            conn.execute(
                sa.insert(predictions),
                [
                    {
                        "job_id": job_id,
                        "user_id": 1 if job_id == "old-a" else 2,
                        "epoch": epoch,
                        "step": step,
                        "sample_index": index,
                        "prompt_text_id": text_id,
                        "prediction": f"{step} {index}",
                        "created_at": now,
                        "char_error_rate": (index % 7) / 7,
                        "prompt_id": f"id-{index}",
                    }
                    for epoch, step in ROUNDS
                    for n, index in enumerate(samples)
                    if (n + step) % 3  # holes
                ],
            )
    db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_from_0009_fills_each_jobs_samples(
    backend: Backend, make_server: MakeServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_database_url"))
    )
    _fill_0009(url)
    server = make_server(backend, database_url=url)  # migrates to head on start
    db = Database(url)
    try:
        with db.read() as conn:
            counts = dict(conn.execute(sa.select(jobs.c.id, jobs.c.distinct_samples)).all())
        assert counts == {"old-a": len(SAMPLES), "old-b": 3, "old-empty": 0}
        with server.client(server.create_key("ann")) as http:
            assert assert_same_as_reference(http, db, "old-a") == len(SAMPLES)
            assert assert_same_as_reference(http, db, "old-empty") == 0
            # Ingest goes on from the migrated count: one new sample, one known.
            ingest(http, "old-a", [row(9, 90, 3), row(9, 90, 34)])
            assert assert_same_as_reference(http, db, "old-a") == len(SAMPLES) + 1
        with server.client(server.create_key("bob")) as http:
            assert assert_same_as_reference(http, db, "old-b") == 3
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0011_up_down_up(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'm.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_database_url"))
    )
    db = Database(url)
    try:
        upgrade(db.engine)
        assert "job_samples" in sa.inspect(db.engine).get_table_names()
        command.downgrade(alembic_config(db.engine), "0010")
        inspector = sa.inspect(db.engine)
        assert "job_samples" not in inspector.get_table_names()
        assert "distinct_samples" not in {c["name"] for c in inspector.get_columns("jobs")}
        upgrade(db.engine)
        assert "job_samples" in sa.inspect(db.engine).get_table_names()
    finally:
        db.dispose()
