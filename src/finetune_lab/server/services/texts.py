"""Prompts and ground truths stored once per job, referenced by id from the prediction rows.

Every round of a job sends the same prompts and ground truths again; storing them per row made
a job's texts cost rounds x their size. A text is keyed within its job by a digest of its
content (so a prompt shared by several samples, or used as a ground truth too, is kept once)
and rows hold its id. Reads put the text back with a correlated subquery per returned row, so
the API's rows are what they always were.

A text no row refers to any more (a re-sent row changed it) is deleted in the same
transaction: the database never keeps text its user has replaced. Deleting a job deletes its
texts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Label, delete, exists, select

from finetune_lab.server.db.tables import prediction_texts, predictions

DIGEST_BYTES = 16  # SHA-256 cut to 128 bits: collisions need ~2^64 texts (or work) in one job
LOOKUP_CHUNK = 500  # digests per SELECT (bound parameters stay well under SQLite's limit)
INSERT_CHUNK = 300  # texts per INSERT (3 parameters each)
TEXT_FIELDS = {"prompt": "prompt_text_id", "ground_truth": "truth_text_id"}


def digest(text: str) -> bytes:
    """The key of a text within its job (migration 0005 computes the same in SQL)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:DIGEST_BYTES]


def text_column(field: str) -> Label[Any]:
    """`prompt` or `ground_truth` of the predictions row in the enclosing SELECT."""
    t = prediction_texts.c
    ref = predictions.c[TEXT_FIELDS[field]]
    return select(t.text).where(t.id == ref).scalar_subquery().label(field)


def _fetch(conn: Connection, sql: str, params: Sequence[Any]) -> dict[bytes, int]:
    """`{digest: id}` from a query returning (digest, id) rows, on the driver's own cursor:
    SQLAlchemy's result wrapping cost a few microseconds per row, 2,000 rows a batch."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        return {bytes(key): int(text_id) for key, text_id in cursor.fetchall()}
    finally:
        cursor.close()


def _lookup(conn: Connection, job_id: str, digests: Sequence[bytes]) -> dict[bytes, int]:
    """Ids of the job's texts by digest. Plain driver SQL: SQLAlchemy's per-parameter
    processing of a 500-item IN list cost more than the query. On PostgreSQL the digests go as
    one array: psycopg prepares a statement run 5 times, and the generic plan of a long IN list
    walked the job's whole text index per batch (281 ms at 21k texts vs 3.4 ms for ANY). Arrays
    go in binary (`%b`): psycopg's text form escapes every element with a regular expression,
    15% of a worst-case batch."""
    found: dict[bytes, int] = {}
    if conn.dialect.name == "postgresql":
        sql = "SELECT digest, id FROM prediction_texts WHERE job_id = %s AND digest = ANY(%b)"
        return _fetch(conn, sql, (job_id, list(digests)))
    for start in range(0, len(digests), LOOKUP_CHUNK):
        chunk = list(digests[start : start + LOOKUP_CHUNK])
        marks = ", ".join("?" for _ in chunk)
        sql = f"SELECT digest, id FROM prediction_texts WHERE job_id = ? AND digest IN ({marks})"
        found.update(_fetch(conn, sql, (job_id, *chunk)))
    return found


def _insert_missing(conn: Connection, job_id: str, missing: dict[bytes, str]) -> dict[bytes, int]:
    """Insert the job's new texts; their ids by digest (RETURNING: no second lookup).

    Writers of one job take turns (SQLite's write lock, PostgreSQL's advisory lock), so a text
    is missing until this very insert; DO NOTHING only guards that assumption (a text it skips
    is looked up instead). Plain driver SQL, one statement per chunk: SQLAlchemy compiled a
    multi-row VALUES afresh on every batch (its 900 bound parameters cost more than the
    insert)."""
    ids: dict[bytes, int] = {}
    if conn.dialect.name == "postgresql":
        sql = (
            "INSERT INTO prediction_texts (job_id, digest, text) "
            "SELECT %s, d, t FROM unnest(%b::bytea[], %b::text[]) AS u(d, t) "
            "ON CONFLICT (job_id, digest) DO NOTHING RETURNING digest, id"
        )
        ids.update(_fetch(conn, sql, (job_id, list(missing), list(missing.values()))))
    else:
        items = list(missing.items())
        for start in range(0, len(items), INSERT_CHUNK):
            chunk = items[start : start + INSERT_CHUNK]
            values = ", ".join("(?, ?, ?)" for _ in chunk)
            sql = (
                f"INSERT INTO prediction_texts (job_id, digest, text) VALUES {values} "
                "ON CONFLICT (job_id, digest) DO NOTHING RETURNING digest, id"
            )
            params = [value for key, text in chunk for value in (job_id, key, text)]
            ids.update(_fetch(conn, sql, params))
    skipped = [key for key in missing if key not in ids]
    if skipped:
        ids.update(_lookup(conn, job_id, skipped))
    return ids


def store(
    conn: Connection,
    job_id: str,
    rows: list[dict[str, Any]],
    replaced: Iterable[tuple[int, int | None]],
) -> set[int]:
    """Before the upsert: give each row its `prompt_text_id` and `truth_text_id`, inserting the
    texts the job does not have yet. `replaced`: the (prompt, truth) text ids of the stored
    rows the batch replaces. Returns those the batch does not use, for `drop_unused` after the
    upsert."""
    keys: dict[str, bytes] = {}
    for row in rows:
        for field in TEXT_FIELDS:
            text = row[field]
            if text is not None and text not in keys:
                keys[text] = digest(text)
    ids = _lookup(conn, job_id, list(keys.values()))
    missing = {key: text for text, key in keys.items() if key not in ids}
    if missing:
        ids.update(_insert_missing(conn, job_id, missing))
    previous = {text_id for pair in replaced for text_id in pair if text_id is not None}
    for row in rows:
        for field, column in TEXT_FIELDS.items():
            text = row[field]
            row[column] = None if text is None else ids[keys[text]]
    return previous - set(ids.values())


def drop_unused(conn: Connection, candidates: set[int]) -> None:
    """After the upsert: delete those of `candidates` that no row refers to any more."""
    if not candidates:
        return
    t, p = prediction_texts.c, predictions.c
    as_prompt = exists().where(p.prompt_text_id == t.id)
    as_truth = exists().where(p.truth_text_id == t.id)
    conn.execute(
        delete(prediction_texts).where(t.id.in_(sorted(candidates)), ~as_prompt, ~as_truth)
    )


def delete_job_texts(conn: Connection, job_id: str) -> None:
    """With the job's rows: its texts go too."""
    conn.execute(delete(prediction_texts).where(prediction_texts.c.job_id == job_id))
