"""Indexed text search (issue 14): the same rows as the scan, for any text and query; the
bound on queries too short for the index; the index kept in step; PostgreSQL without pg_trgm."""

from __future__ import annotations

import random
import time
import uuid

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support.appserver import Backend, ServerHandle
from _support.infra import MakeServer
from _support.postgres import PostgresServer
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.migrate import alembic_config

from ._helpers import JOBS, PRED, assert_error, create_job, fetch_all, ingest, key_of, row

# LIKE's metacharacters, quotes (FTS5's), case pairs SQLite's LIKE does not fold (accented E,
# Greek sigmas, Turkish dotted and dotless i, sharp s) and ASCII ones it does.
ALPHABET = list("aAbBzZ %_\\'\"*.-ÉéΣσςİiıßSs✓")  # noqa: RUF001
texts = st.text(alphabet=ALPHABET, min_size=0, max_size=14)


def _flip_case(text: str, rng: random.Random) -> str:
    return "".join(c.swapcase() if rng.random() < 0.5 else c for c in text)


def _queries(sent: list[dict], rng: random.Random, extra: list[str]) -> list[str]:
    """Substrings of what was stored (case flipped at random) and unrelated strings."""
    found = []
    for item in sent:
        for field in ("prompt", "prediction", "ground_truth"):
            value = item[field] or ""
            if len(value) >= 1:
                start = rng.randrange(len(value))
                end = rng.randrange(start + 1, min(len(value), start + 6) + 1)
                found.append(_flip_case(value[start:end], rng))
    return (found + extra)[:12]


def _both(indexed: httpx.Client, scan: httpx.Client, job_id: str, q: str) -> None:
    got = fetch_all(indexed, job_id, q=q)
    want = fetch_all(scan, job_id, q=q)
    assert [key_of(p) for p in got] == [key_of(p) for p in want], q
    counts = [
        c.get(f"{PRED}/{job_id}", params={"q": q, "limit": 1}).json()["total_count"]
        for c in (indexed, scan)
    ]
    assert counts[0] == counts[1] == len(want), q


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_indexed_search_returns_what_the_scan_returns(
    backend: Backend, make_server: MakeServer
) -> None:
    indexed_server = make_server(backend)
    scan_server = make_server(
        backend,
        extra_env={"FINETUNE_LAB_SEARCH_INDEX": "off"},
        database_url=indexed_server.database_url,
    )
    key = indexed_server.create_key("alice")
    with indexed_server.client(key) as indexed, scan_server.client(key) as scan:

        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            rows=st.lists(st.tuples(texts, texts, st.none() | texts), min_size=1, max_size=6),
            extra=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), max_size=3),
            seed=st.integers(0, 2**32),
        )
        def check(rows: list[tuple[str, str, str | None]], extra: list[str], seed: int) -> None:
            job_id = f"t-{uuid.uuid4().hex}"
            create_job(indexed, job_id)
            sent = [
                row(
                    1 + i % 2,
                    1 + i % 2,
                    i,
                    prompt=prompt or "-",  # a prompt must not be empty
                    prediction=prediction,
                    ground_truth=truth,
                )
                for i, (prompt, prediction, truth) in enumerate(rows)
            ]
            ingest(indexed, job_id, sent)
            # A re-sent row with other texts: the index must follow the update.
            ingest(indexed, job_id, [{**sent[0], "prediction": sent[-1]["prediction"] + "Z%"}])
            for q in _queries(sent, random.Random(seed), extra):
                if len(q) <= 200 and "\x00" not in q:
                    _both(indexed, scan, job_id, q)

        check()


def test_a_short_query_scans_only_a_bounded_number_of_rows(make_server: MakeServer) -> None:
    server = make_server("sqlite", extra_env={"FINETUNE_LAB_SEARCH_SCAN_MAX_ROWS": "4"})
    key = server.create_key("alice")
    with server.client(key) as http:
        job_id = f"t-{uuid.uuid4().hex}"
        create_job(http, job_id)
        ingest(
            http,
            job_id,
            [row(e, e, i, prediction=f"ok{e}{i}") for e in (1, 2) for i in range(4)],
        )
        error = assert_error(http.get(f"{PRED}/{job_id}", params={"q": "ok"}), 422)
        assert "3 or more characters" in error["message"] and "epoch" in error["message"]
        # One round is 4 rows: within the bound.
        assert [p["sample_index"] for p in fetch_all(http, job_id, q="OK", epoch=2)] == [
            0,
            1,
            2,
            3,
        ]
        # Three characters use the index, whatever the job's size.
        assert len(fetch_all(http, job_id, q="ok1")) == 4


def _sqlite_index_ok(server: ServerHandle) -> None:
    db = Database(server.database_url)
    try:
        deadline = time.monotonic() + 60
        while True:  # the server's indexer catches up behind the ingest (migration 0010)
            with db.read() as conn:
                behind = conn.exec_driver_sql(
                    "SELECT count(*) FROM search_watermarks w WHERE w.watermark < CASE w.source "
                    "WHEN 'predictions' THEN (SELECT coalesce(max(id), 0) FROM predictions) "
                    "ELSE (SELECT coalesce(max(id), 0) FROM prediction_texts) END"
                ).scalar()
            if not behind:
                break
            assert time.monotonic() < deadline, "the indexer did not catch up"
            time.sleep(0.05)
        with db.write() as conn:
            for fts in ("predictions_fts", "prediction_texts_fts"):
                # rank 1: FTS5 checks its index against the content table; raises on any
                # difference (missing, extra or stale entries).
                conn.exec_driver_sql(
                    f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)"
                )
    finally:
        db.dispose()


def test_the_sqlite_index_follows_inserts_updates_and_deletes(make_server: MakeServer) -> None:
    server = make_server("sqlite")
    key = server.create_key("alice")
    with server.client(key) as http:
        job_id = f"t-{uuid.uuid4().hex}"
        create_job(http, job_id)
        ingest(
            http,
            job_id,
            [row(1, 1, i, prediction=f"first {i}", prompt=f"Prompt {i}") for i in range(5)],
        )
        ingest(
            http,
            job_id,
            [row(1, 1, i, prediction=f"second {i}", prompt="Prompt 0") for i in range(3)],
        )
        _sqlite_index_ok(server)
        assert len(fetch_all(http, job_id, q="first")) == 2
        assert len(fetch_all(http, job_id, q="second")) == 3
        assert len(fetch_all(http, job_id, q="prompt 0")) == 3
        assert fetch_all(http, job_id, q="Prompt 1") == []  # its text was replaced and dropped
        assert http.delete(f"{JOBS}/{job_id}").status_code == 200
        _sqlite_index_ok(server)
        db = Database(server.database_url)
        with db.read() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM prediction_texts")) == 0
        db.dispose()


def test_postgresql_without_pg_trgm_scans_and_says_so(
    postgres: PostgresServer, make_server: MakeServer
) -> None:
    """A role that may not create extensions: the migration carries on, the server logs that
    search scans, and search still answers."""
    role = f"noext_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database()
    dbname = sa.engine.make_url(url).database
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT CONNECT, TEMP ON DATABASE {dbname} TO {role}")
    with psycopg.connect(postgres.libpq_url(str(dbname)), autocommit=True) as admin:
        admin.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
    role_url = sa.engine.make_url(url).set(username=role).render_as_string(hide_password=False)
    server = make_server("postgresql", database_url=role_url)
    assert "pg_trgm" in server.log_path.read_text() and "scans" in server.log_path.read_text()
    key = server.create_key("alice")
    with server.client(key) as http:
        job_id = f"t-{uuid.uuid4().hex}"
        create_job(http, job_id)
        ingest(http, job_id, [row(1, 1, i, prediction=f"answer {i}") for i in range(3)])
        assert [p["sample_index"] for p in fetch_all(http, job_id, q="ANSWER 2")] == [2]
        assert len(fetch_all(http, job_id, q="2")) == 1  # no index: no bound either


def test_postgresql_trigram_indexes_keep_a_small_pending_list(pg_database_url: str) -> None:
    """Migration 0012: the default 4 MB GIN pending list left about 4 MB of free pages in each
    trigram index (0.44x the text sent for bench/storage.py's job instead of 0.33x)."""

    def options() -> dict[str, list[str] | None]:
        with db.read() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT relname, reloptions FROM pg_class WHERE relname IN "
                    "('ix_predictions_prediction_trgm', 'ix_prediction_texts_text_trgm')"
                )
            ).all()
        return {name: opts for name, opts in rows}

    db = Database(pg_database_url)
    try:
        upgrade(db.engine)
        small = ["gin_pending_list_limit=256"]
        names = ("ix_predictions_prediction_trgm", "ix_prediction_texts_text_trgm")
        assert options() == dict.fromkeys(names, small)
        command.downgrade(alembic_config(db.engine), "0011")
        assert options() == dict.fromkeys(names, None)
        upgrade(db.engine)
        assert options() == dict.fromkeys(names, small)
    finally:
        db.dispose()
