"""The text-search index off the ingest path (issue 14, migration 0010, SQLite): ingest writes
no index entries, the server's indexer catches up behind a watermark, and a search is exact at
every moment (the rows above the watermark are scanned); deletes and re-sent rows keep the
index exact; two server processes index one database safely; 0010 goes up, down and up."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from _support.appserver import Backend, ServerHandle
from _support.infra import MakeServer
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.migrate import alembic_config
from finetune_lab.server.db.tables import jobs, prediction_texts, predictions, users
from finetune_lab.server.services.search_indexer import SOURCES, IndexerSettings, index_chunk
from finetune_lab.server.services.texts import digest

from ._helpers import JOBS, create_job, fetch_all, ingest, key_of, row

NO_INDEXER = {"FINETUNE_LAB_SEARCH_INDEXER": "off"}
FAST_INDEXER = {"FINETUNE_LAB_SEARCH_INDEX_POLL_S": "0.05"}
SCAN = {"FINETUNE_LAB_SEARCH_INDEX": "off"}


def _state(url: str) -> dict[str, tuple[int, int]]:
    """Per source: (watermark, largest id)."""
    db = Database(url)
    try:
        with db.read() as conn:
            out = {}
            for source in SOURCES:
                mark = conn.scalar(
                    sa.text("SELECT watermark FROM search_watermarks WHERE source = :s"),
                    {"s": source},
                )
                largest = conn.scalar(sa.text(f"SELECT coalesce(max(id), 0) FROM {source}"))
                out[source] = (int(mark), int(largest))
            return out
    finally:
        db.dispose()


def _index_ok(url: str) -> None:
    """The FTS5 tables hold exactly the content tables (rank 1: checked against the content)."""
    db = Database(url)
    try:
        with db.write() as conn:
            for fts, _ in SOURCES.values():
                conn.exec_driver_sql(
                    f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)"
                )
    finally:
        db.dispose()


def _index_some(url: str, rows: int) -> None:
    """One indexer chunk of `rows` per source, as the server's indexer runs it."""
    db = Database(url)
    try:
        for source in SOURCES:
            with db.write() as conn:
                index_chunk(conn, source, IndexerSettings(chunk_rows=rows))
    finally:
        db.dispose()


def _wait_indexed(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        state = _state(url)
        if all(mark == largest for mark, largest in state.values()):
            return
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def _same(indexed: httpx.Client, scan: httpx.Client, job_id: str, q: str) -> list[dict]:
    got = fetch_all(indexed, job_id, q=q)
    assert [key_of(p) for p in got] == [key_of(p) for p in fetch_all(scan, job_id, q=q)], q
    return got


def test_a_search_is_exact_before_during_and_after_indexing(make_server: MakeServer) -> None:
    indexed_server = make_server("sqlite", extra_env=NO_INDEXER)
    url = indexed_server.database_url
    scan_server = make_server("sqlite", extra_env=SCAN, database_url=url)
    key = indexed_server.create_key("alice")
    with indexed_server.client(key) as indexed, scan_server.client(key) as scan:
        job_a, job_b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
        create_job(indexed, job_a)
        create_job(indexed, job_b)
        ingest(
            indexed,
            job_a,
            [row(1, 1, i, prediction=f"Needle {i}", prompt=f"Haystack {i}") for i in range(10)],
        )
        # Right after ingest, nothing indexed: the search finds the rows by the scan of the tail.
        assert {s: v[0] for s, v in _state(url).items()} == {s: 0 for s in SOURCES}
        assert len(_same(indexed, scan, job_a, "needle")) == 10
        assert len(_same(indexed, scan, job_a, "HAYSTACK 3")) == 1

        _index_some(url, 4)  # part indexed: the watermark mid-job
        marks = {s: v[0] for s, v in _state(url).items()}
        assert 0 < marks["predictions"] < _state(url)["predictions"][1]
        # Re-sent rows on both sides of the watermark, with new predictions and prompts.
        ingest(
            indexed,
            job_a,
            [row(1, 1, i, prediction=f"thread {i}", prompt=f"Bale {i}") for i in (1, 2, 8)],
        )
        for q in ("needle", "thread", "bale", "haystack", "needle 2", "ale 8", "edle 9"):
            _same(indexed, scan, job_a, q)
        assert {p["sample_index"] for p in _same(indexed, scan, job_a, "thread")} == {1, 2, 8}
        assert _same(indexed, scan, job_a, "haystack 8") == []  # its text was replaced

        # Job b holds the largest ids; indexed, then deleted: SQLite hands those ids out again.
        ingest(indexed, job_b, [row(1, 1, i, prediction=f"other {i}") for i in range(6)])
        _index_some(url, 1_000)
        before = _state(url)["predictions"]
        assert before[0] == before[1]
        assert indexed.delete(f"{JOBS}/{job_b}").status_code == 200
        ingest(indexed, job_a, [row(1, 2, i, prediction=f"reused {i}") for i in range(6)])
        db = Database(url)
        with db.read() as conn:
            new_ids = conn.scalars(sa.select(predictions.c.id).where(predictions.c.step == 2)).all()
        db.dispose()
        assert min(new_ids) <= before[0]  # an id the index covered before the delete
        assert len(_same(indexed, scan, job_a, "reused")) == 6

        # A server with the indexer on catches up; the index then holds exactly the rows.
        catcher = make_server("sqlite", extra_env=FAST_INDEXER, database_url=url)
        _wait_indexed(url)
        catcher.stop()
        _index_ok(url)
        for q in ("needle", "thread", "reused", "other", "bale 2", "haystack"):
            _same(indexed, scan, job_a, q)


def test_two_server_processes_index_one_database(make_server: MakeServer) -> None:
    first = make_server(
        "sqlite", extra_env={**FAST_INDEXER, "FINETUNE_LAB_SEARCH_INDEX_CHUNK_ROWS": "7"}
    )
    url = first.database_url
    second = make_server(
        "sqlite",
        extra_env={**FAST_INDEXER, "FINETUNE_LAB_SEARCH_INDEX_CHUNK_ROWS": "5"},
        database_url=url,
    )
    key = first.create_key("alice")
    with first.client(key) as one, second.client(key) as two:
        job_id = f"t-{uuid.uuid4().hex}"
        create_job(one, job_id)
        for step in range(20):
            http = one if step % 2 else two
            ingest(
                http,
                job_id,
                [
                    row(1, step, i, prediction=f"w{step}x{i}", prompt=f"p{step % 3}")
                    for i in range(9)
                ],
            )
        _wait_indexed(url)
        _index_ok(url)
        got = fetch_all(one, job_id, q="w13x")
        assert [p["sample_index"] for p in got] == list(range(9))


def _fill_0009(url: str) -> None:
    """A database at revision 0009 (FTS5 triggers index every insert), with two jobs."""
    db = Database(url)
    upgrade(db.engine, "0009")
    now = datetime.now(timezone.utc)
    with db.write() as conn:
        conn.execute(sa.insert(users).values(id=1, name="alice", created_at=now))
        for job_id in ("old-a", "old-b"):
            conn.execute(
                sa.insert(jobs).values(
                    id=job_id,
                    user_id=1,
                    status="running",
                    config={},
                    created_at=now,
                    updated_at=now,
                )
            )
            prompt = f"Prompt of {job_id} ünïcode"
            text_id = conn.execute(
                sa.insert(prediction_texts)
                .values(job_id=job_id, digest=digest(prompt), text=prompt)
                .returning(prediction_texts.c.id)
            ).scalar_one()
            conn.execute(
                sa.insert(predictions),
                [
                    {
                        "job_id": job_id,
                        "user_id": 1,
                        "epoch": 1,
                        "step": 1,
                        "sample_index": i,
                        "prompt_text_id": text_id,
                        "prediction": f"{job_id} answer {i}",
                        "created_at": now,
                    }
                    for i in range(5)
                ],
            )
    db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0010_up_down_up_on_a_filled_database(
    backend: Backend, make_server: MakeServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'm.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_database_url"))
    )
    _fill_0009(url)

    def search_works(server: ServerHandle) -> None:
        key = server.create_key("alice")
        with server.client(key) as http:
            assert {p["sample_index"] for p in fetch_all(http, "old-a", q="ANSWER 3")} == {3}
            assert len(fetch_all(http, "old-b", q="ünïcode")) == 5

    server = make_server(backend, extra_env=NO_INDEXER, database_url=url)  # to head
    if backend == "sqlite":
        state = _state(url)
        assert all(mark == largest > 0 for mark, largest in state.values()), state
        _index_ok(url)  # 0006's triggers indexed them: the watermark starts past them
    search_works(server)
    with server.client(server.create_key("alice", name="more")) as http:
        ingest(http, "old-a", [row(2, 2, i, prediction=f"late {i}") for i in range(3)])
    server.stop()

    db = Database(url)
    try:
        command.downgrade(alembic_config(db.engine), "0009")
        if backend == "sqlite":
            _index_ok(url)  # the rows above the watermark were indexed on the way down
            with db.read() as conn:
                names = set(conn.scalars(sa.text("SELECT name FROM sqlite_master")))
            assert "search_watermarks" not in names
            assert {"predictions_fts_insert", "prediction_texts_fts_insert"} <= names
        upgrade(db.engine)
    finally:
        db.dispose()
    if backend == "sqlite":
        _index_ok(url)
    server = make_server(backend, extra_env=NO_INDEXER, database_url=url)
    search_works(server)
    with server.client(server.create_key("alice", name="last")) as http:
        assert len(fetch_all(http, "old-a", q="late")) == 3
