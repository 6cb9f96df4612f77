"""Prompts and ground truths stored once per job (issue 14): what is stored, what reads back,
re-sends that change a text, job deletion, and the migration of a database filled by 0004."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from _support.appserver import Backend, ServerHandle
from _support.infra import MakeServer
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.tables import jobs, prediction_texts, predictions, users

from ._helpers import JOBS, create_job, fetch_all, ingest, key_of, row


@pytest.fixture
def db(server: ServerHandle) -> Iterator[Database]:
    """The shared server's own database, to look at what it stored."""
    database = Database(server.database_url)
    yield database
    database.dispose()


def _texts(db: Database, job_id: str) -> list[str]:
    t = prediction_texts.c
    with db.read() as conn:
        return sorted(conn.scalars(sa.select(t.text).where(t.job_id == job_id)))


def test_each_text_is_stored_once_and_reads_back(
    http: httpx.Client, db: Database, unique_job_id: str
) -> None:
    create_job(http, unique_job_id)
    long_prompt = "Résumé ✓ " * 200  # 1,800 characters, non-ASCII
    prompts = [long_prompt, "What is 2+2?", "4"]  # the last one is also a ground truth
    truths = ["yes", "4", None]
    sent = [
        row(
            epoch,
            epoch * 10,
            i,
            prediction=f"p{epoch}-{i}",
            prompt=prompts[i],
            ground_truth=truths[i],
        )
        for epoch in range(1, 5)
        for i in range(3)
    ]
    ingest(http, unique_job_id, sent)
    ingest(http, unique_job_id, sent)  # idempotent: nothing new
    assert _texts(db, unique_job_id) == sorted({long_prompt, "What is 2+2?", "4", "yes"})
    got = {key_of(p): p for p in fetch_all(http, unique_job_id)}
    assert len(got) == len(sent)
    for item in sent:
        stored = got[(item["epoch"], item["step"], item["sample_index"])]
        for field in ("prompt", "ground_truth", "prediction"):
            assert stored[field] == item[field]
    sample = http.get(f"/api/training/predictions/{unique_job_id}/samples/0").json()
    assert sample["prompt"] == long_prompt and sample["ground_truth"] == "yes"
    compare = http.get(
        f"/api/training/predictions/{unique_job_id}/compare",
        params={"from_epoch": 1, "to_epoch": 4},
    ).json()
    items = compare["improved"] + compare["regressed"] + compare["unchanged"]
    assert {(i["prompt"], i["ground_truth"]) for i in items} == set(
        zip(prompts, truths, strict=True)
    )


def test_a_resent_row_takes_its_new_texts_and_the_old_ones_go(
    http: httpx.Client, db: Database, unique_job_id: str
) -> None:
    create_job(http, unique_job_id)
    ingest(
        http,
        unique_job_id,
        [
            row(1, 1, 0, prompt="secret prompt", ground_truth="secret truth"),
            row(1, 1, 1, prompt="shared", ground_truth="kept"),
            row(2, 2, 1, prompt="shared", ground_truth="kept"),
        ],
    )
    # Row (1, 0) is re-sent with other texts; (1, 1) too, but its old texts are still used by
    # the round-2 row, so they stay.
    result = ingest(
        http,
        unique_job_id,
        [
            row(1, 1, 0, prompt="redacted", ground_truth=None),
            row(1, 1, 1, prompt="other", ground_truth="kept"),
        ],
    )
    assert (result["created"], result["updated"]) == (0, 2)
    assert _texts(db, unique_job_id) == ["kept", "other", "redacted", "shared"]
    got = {p["sample_index"]: p for p in fetch_all(http, unique_job_id, epoch=1)}
    assert (got[0]["prompt"], got[0]["ground_truth"]) == ("redacted", None)
    assert (got[1]["prompt"], got[1]["ground_truth"]) == ("other", "kept")
    assert fetch_all(http, unique_job_id, epoch=2)[0]["prompt"] == "shared"


def test_the_same_text_in_two_jobs_is_each_jobs_own(
    http: httpx.Client, db: Database, unique_job_id: str
) -> None:
    other = unique_job_id + "-b"
    for job_id in (unique_job_id, other):
        create_job(http, job_id)
        ingest(http, job_id, [row(1, 1, 0, prompt="same prompt", ground_truth="same truth")])
    assert http.delete(f"{JOBS}/{unique_job_id}").status_code == 200
    assert _texts(db, unique_job_id) == []
    assert _texts(db, other) == ["same prompt", "same truth"]
    assert fetch_all(http, other)[0]["prompt"] == "same prompt"


ARRAY_SYNTAX = ["NULL", "", " ", "{a,b}", '"quoted"', "back\\slash", "a,b", "{}", "é ∅ 🙂"]


def test_many_new_texts_in_one_batch_with_array_syntax_read_back(
    http: httpx.Client, db: Database, unique_job_id: str
) -> None:
    """One batch of 700 new prompts and truths (more than one insert chunk and one lookup
    chunk; PostgreSQL sends them as arrays), among them texts an array's text form would have
    to quote: each is stored once under its own id and reads back exactly; a re-send adds
    nothing and keeps the ids."""
    create_job(http, unique_job_id)
    prompts = [f"{ARRAY_SYNTAX[i % len(ARRAY_SYNTAX)]} prompt {i}" for i in range(350)]
    prompts[: len(ARRAY_SYNTAX)] = ARRAY_SYNTAX
    truths = [f"truth {i} {ARRAY_SYNTAX[-1 - i % len(ARRAY_SYNTAX)]}" for i in range(350)]
    sent = [
        row(1, 10, i, prediction=f"p{i}", prompt=prompts[i], ground_truth=truths[i])
        for i in range(350)
    ]
    ingest(http, unique_job_id, sent)
    t = prediction_texts.c
    stored = sa.select(t.text, t.id).where(t.job_id == unique_job_id)
    with db.read() as conn:
        ids_before = dict(conn.execute(stored).tuples().all())
    assert sorted(ids_before) == sorted({*prompts, *truths})
    assert ingest(http, unique_job_id, sent)["updated"] == len(sent)
    with db.read() as conn:
        ids_after = dict(conn.execute(stored).tuples().all())
    assert ids_after == ids_before
    got = {p["sample_index"]: p for p in fetch_all(http, unique_job_id)}
    assert [(got[i]["prompt"], got[i]["ground_truth"]) for i in range(350)] == list(
        zip(prompts, truths, strict=True)
    )


# -- a database filled by 0004 ------------------------------------------------------------

OLD_TEXT_COLUMNS = ("prompt", "ground_truth")
OLD_PREDICTIONS = sa.table(
    "predictions",
    *(
        sa.column(c.name, c.type)
        for c in predictions.c
        if c.name not in ("id", "prompt_text_id", "truth_text_id")
    ),
    *(sa.column(name, sa.Text) for name in OLD_TEXT_COLUMNS),
)


def _old_rows() -> list[dict[str, Any]]:
    """Two users' jobs: prompts shared across rounds and samples, a prompt that is another's
    ground truth, null truths, unicode and a long text, and the same text in both jobs."""
    stamp = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    rows = []
    for job_id, user_id in (("old-a", 1), ("old-b", 2)):
        for step in (10, 20, 30):
            for i in range(6):
                rows.append(
                    {
                        "job_id": job_id,
                        "user_id": user_id,
                        "epoch": step // 10,
                        "step": step,
                        "sample_index": i,
                        "prompt": ["Σίσυφος ß İ ✓ " * 150, "plain", "yes", "x", "plain", "%_\\"][i],
                        "ground_truth": [None, "yes", "no", "x", "yes", None][i],
                        "prediction": f"{job_id} {step} {i}",
                        "created_at": stamp,
                        "exact_match": float(i % 2),
                        "char_error_rate": i / 10,
                        "prompt_id": f"id-{i}" if i % 2 else None,
                        "metrics": {"m": i * 1.5} if i == 2 else None,
                        "validation_errors": [{"validator": "json_parse", "message": "x"}]
                        if i == 3
                        else None,
                        "do_sample": bool(i % 2),
                        "latency_ms": 1.25,
                    }
                )
    return rows


def _fill_0004(url: str) -> list[dict[str, Any]]:
    db = Database(url)
    upgrade(db.engine, "0004")
    now = datetime.now(timezone.utc)
    with db.write() as conn:
        conn.execute(
            sa.insert(users),
            [
                {"id": 1, "name": "ann", "created_at": now},
                {"id": 2, "name": "bob", "created_at": now},
            ],
        )
        conn.execute(
            sa.insert(jobs),
            [
                {
                    "id": job_id,
                    "user_id": uid,
                    "status": "running",
                    "config": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for job_id, uid in (("old-a", 1), ("old-b", 2))
            ],
        )
        conn.execute(sa.insert(OLD_PREDICTIONS), _old_rows())
        before = [
            dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM predictions ORDER BY id"))
        ]
    db.dispose()
    return before


def _read_back(url: str) -> list[dict[str, Any]]:
    """Every row of the migrated table, texts joined back in, with the old table's columns."""
    db = Database(url)
    try:
        with db.read() as conn:
            result = conn.execute(
                sa.text(
                    "SELECT p.*, pt.text AS prompt, gt.text AS ground_truth FROM predictions p "
                    "JOIN prediction_texts pt ON pt.id = p.prompt_text_id "
                    "LEFT JOIN prediction_texts gt ON gt.id = p.truth_text_id ORDER BY p.id"
                )
            )
            rows = [dict(r._mapping) for r in result]
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.text("SELECT job_id, count(*) FROM prediction_texts GROUP BY job_id")
                ).all()
            )
    finally:
        db.dispose()
    assert counts == {"old-a": 6, "old-b": 6}  # per job: 5 distinct prompts, and "no"
    for r in rows:
        del r["prompt_text_id"], r["truth_text_id"]
    return rows


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_from_0004_keeps_every_row(
    backend: Backend, make_server: MakeServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_database_url"))
    )
    before = _fill_0004(url)
    assert len(before) == 36
    server = make_server(backend, database_url=url)  # migrates to head on start
    assert _read_back(url) == before
    key = server.create_key("ann")
    with server.client(key) as http:
        got = fetch_all(http, "old-a")
        assert [(p["prompt"], p["ground_truth"]) for p in got] == [
            (r["prompt"], r["ground_truth"]) for r in before if r["job_id"] == "old-a"
        ]
        # Search finds the migrated texts (0006 indexed them), and ingest goes on.
        assert {p["sample_index"] for p in fetch_all(http, "old-a", q="ß İ")} == {0}
        ingest(http, "old-a", [row(4, 40, 0, prompt="plain", ground_truth="yes")])
        assert fetch_all(http, "old-a", step=40)[0]["prompt"] == "plain"
