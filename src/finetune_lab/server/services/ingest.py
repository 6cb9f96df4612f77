"""The write path: validate and score a batch, then upsert it and refresh its rounds' rollups
in one transaction."""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson
import pydantic
from msgspec.structs import asdict
from sqlalchemy import (
    Connection,
    case,
    column,
    select,
    table,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from finetune_lab.schema import MAX_BATCH_ITEMS, is_valid_job_id
from finetune_lab.scoring.worker import ValidatorSpec
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.job_lock import lock_job
from finetune_lab.server.db.tables import jobs, predictions
from finetune_lab.server.errors import APIError, not_found
from finetune_lab.server.services import batch_decode, judges, samples, stream, texts
from finetune_lab.server.services.batch_decode import IngestItem
from finetune_lab.server.services.rollups import refresh_rounds
from finetune_lab.server.services.scoring_pool import ScoringPool
from finetune_lab.server.services.tokens import utcnow

KEY_COLUMNS = ("job_id", "step", "sample_index")
JSON_COLUMNS = ("validation_errors", "metrics")
# The columns ingest writes, in the order of its row tuples: those taken as they are, the JSON
# ones, then the batch's timestamp (so a row's tuple is built without a per-column loop).
PLAIN_COLUMNS = tuple(
    column.name
    for column in predictions.c
    if column.name not in ("id", "created_at", *JSON_COLUMNS)
)
WRITE_COLUMNS = (*PLAIN_COLUMNS, *JSON_COLUMNS, "created_at")
SQLITE_TIMESTAMP = "%Y-%m-%d %H:%M:%S.%f"  # the format SQLAlchemy's SQLite DateTime reads back


def parse_batch(body: bytes) -> list[IngestItem]:
    """Bytes → validated items; one bad item rejects the batch with its index in the message."""
    try:
        items = batch_decode.decode(body)
    except pydantic.ValidationError as exc:
        raise _batch_error(exc.errors(include_url=False)) from None
    # JSON can only carry U+0000 as the escape \u0000: most bodies skip the per-field check.
    if b"\\u0000" in body:
        _reject_nul(items)
    return items


TEXT_FIELDS = (
    "prompt",
    "prediction",
    "ground_truth",
    "prompt_id",
    "sample_source",
    "sample_source_id",
)


def _reject_nul(items: list[IngestItem]) -> None:
    message = "text must not contain the NUL character (U+0000)"
    for index, item in enumerate(items):
        texts: list[tuple[tuple[str, ...], str | None]]
        texts = [((name,), getattr(item, name)) for name in TEXT_FIELDS]
        texts += [(("metrics", name), name) for name in item.metrics or {}]
        for loc, value in texts:
            if value is not None and "\x00" in value:
                detail = {
                    "loc": ["predictions", index, *loc],
                    "message": message,
                    "type": "string_pattern_mismatch",
                }
                where = loc[0] if len(loc) == 1 else "metrics key"
                raise APIError(422, f"predictions[{index}] {where}: {message}", details=[detail])


def _batch_error(errors: list[Any]) -> APIError:
    first = errors[0]
    loc = list(first["loc"])
    if first["type"] == "json_invalid":
        return APIError(400, f"request body is not valid JSON: {first['msg']}")
    if loc == ["predictions"] and first["type"] == "too_long":
        return APIError(
            413, f"too many predictions in one batch; at most {MAX_BATCH_ITEMS} allowed"
        )
    details = [
        {"loc": list(err["loc"]), "message": err["msg"], "type": err["type"]} for err in errors
    ]
    if len(loc) >= 2 and loc[0] == "predictions" and isinstance(loc[1], int):
        field = ".".join(str(part) for part in loc[2:]) or "item"
        message = f"predictions[{loc[1]}] {field}: {first['msg']}"
    else:
        message = f"{'.'.join(map(str, loc)) or 'body'}: {first['msg']}"
        if not loc:
            message = 'body must be an object {"predictions": [...]}: ' + first["msg"]
    if len(details) > 1:
        message += f" (and {len(details) - 1} more errors)"
    return APIError(422, message, details=details)


def _scored_rows(
    items: list[IngestItem],
    job_id: str,
    user_id: int,
    spec: ValidatorSpec | None,
    scoring: ScoringPool,
) -> list[dict[str, Any]]:
    # Same (step, sample_index) twice in one batch: the last one wins.
    latest: dict[tuple[int, int], IngestItem] = {}
    for item in items:
        latest[(item.step, item.sample_index)] = item
    kept = list(latest.values())
    pending = scoring.submit(spec, [(item.prediction, item.ground_truth) for item in kept])
    # While the workers score: the rest of each row.
    rows = []
    for item in kept:
        row = asdict(item)
        row["job_id"] = job_id
        row["user_id"] = user_id
        row["created_at"] = None  # stamped once per batch by the upsert
        rows.append(row)
    for row, result in zip(rows, pending(), strict=True):
        (
            row["exact_match"],
            row["char_error_rate"],
            row["length_ratio"],
            row["word_overlap"],
            row["validation_pass"],
            row["validation_kind"],
            row["validation_errors"],
        ) = result
    return rows


def _conflict_update(stmt: Any) -> Any:
    """The upsert clause both backends share: a re-sent row replaces the stored one."""
    changes = {name: stmt.excluded[name] for name in WRITE_COLUMNS if name not in KEY_COLUMNS}
    return stmt.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=changes)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


class SQLiteUpsert:
    """The batch goes into a per-connection staging table (one driver-level executemany), then
    one `INSERT ... SELECT ... ON CONFLICT DO UPDATE` moves it.

    One statement, not one per row: until migration 0010 moved the search index behind the
    ingest, its FTS5 triggers flushed at every statement (an executemany of the upsert cost 3x
    the insert itself); the update trigger on indexed rows still does. The rows go straight to
    the driver, because
    SQLAlchemy's per-row parameter processing cost more than SQLite's own insert work.
    """

    STAGING = "predictions_incoming"

    def __init__(self, dialect: Dialect) -> None:
        columns = ", ".join(WRITE_COLUMNS)
        self.create_staging = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.STAGING} AS "
            f"SELECT {columns} FROM predictions WHERE 0"
        )
        placeholders = ", ".join("?" for _ in WRITE_COLUMNS)
        self.stage = f"INSERT INTO {self.STAGING} ({columns}) VALUES ({placeholders})"
        staging = table(self.STAGING, *(column(name) for name in WRITE_COLUMNS))
        # WHERE true: SQLite would read `ON CONFLICT` after a bare FROM as a join's ON.
        staged = select(*staging.c).where(true())
        stmt = sqlite.insert(predictions).from_select(list(WRITE_COLUMNS), staged)
        self.sql = _conflict_update(stmt).compile(dialect=dialect).string
        self.clear = f"DELETE FROM {self.STAGING}"

    def execute(self, conn: Connection, rows: list[dict[str, Any]], created_at: datetime) -> None:
        stamp = created_at.strftime(SQLITE_TIMESTAMP)
        params = _row_tuples(rows, stamp, _json_text)
        # Every time: a rolled-back transaction takes the CREATE with it.
        conn.exec_driver_sql(self.create_staging)
        conn.exec_driver_sql(self.stage, params)
        conn.exec_driver_sql(self.sql)
        conn.exec_driver_sql(self.clear)


class PostgresUpsert:
    """COPY the batch into a session-local staging table, then one `INSERT ... SELECT ... ON
    CONFLICT DO UPDATE`: twice the rows per second of an executemany on PostgreSQL."""

    STAGING = "predictions_incoming"

    def __init__(self, dialect: Dialect) -> None:
        columns = ", ".join(WRITE_COLUMNS)
        self.create_staging = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.STAGING} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM predictions WITH NO DATA"
        )
        self.copy = f"COPY {self.STAGING} ({columns}) FROM STDIN"
        staged = text(f"SELECT {columns} FROM {self.STAGING}").columns(
            *(predictions.c[name] for name in WRITE_COLUMNS)
        )
        stmt = postgresql.insert(predictions).from_select(list(WRITE_COLUMNS), staged.subquery())
        self.sql = _conflict_update(stmt).compile(dialect=dialect).string

    def execute(self, conn: Connection, rows: list[dict[str, Any]], created_at: datetime) -> None:
        from psycopg.types.json import Jsonb

        params = _row_tuples(rows, created_at, Jsonb)
        with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            # Every time, not once per connection: a rolled-back transaction takes the
            # CREATE with it. When the table exists this is a catalog lookup.
            cursor.execute(self.create_staging)
            with cursor.copy(self.copy) as copy:
                for values in params:
                    copy.write_row(values)
            cursor.execute(self.sql)


def _row_tuples(rows: list[dict[str, Any]], stamp: Any, dump_json: Any) -> list[tuple[Any, ...]]:
    """The rows as tuples in `WRITE_COLUMNS` order (the driver's parameters)."""
    plain, json_values = itemgetter(*PLAIN_COLUMNS), itemgetter(*JSON_COLUMNS)
    return [
        (
            *plain(row),
            *[None if value is None else dump_json(value) for value in json_values(row)],
            stamp,
        )
        for row in rows
    ]


_UPSERTS: dict[str, SQLiteUpsert | PostgresUpsert] = {}


def _upsert_for(dialect: Dialect) -> SQLiteUpsert | PostgresUpsert:
    if dialect.name not in _UPSERTS:
        kind = SQLiteUpsert if dialect.name == "sqlite" else PostgresUpsert
        _UPSERTS[dialect.name] = kind(dialect)
    return _UPSERTS[dialect.name]


def _existing_rows(
    conn: Connection, job_id: str, rows: list[dict[str, Any]]
) -> dict[tuple[int, int], tuple[int, int | None]]:
    """Which of the batch's (step, sample_index) already exist, with the text ids they use
    (what a re-send may leave unused): one index range per round."""
    bounds: dict[int, list[int]] = {}
    for row in rows:
        lo_hi = bounds.setdefault(row["step"], [row["sample_index"], row["sample_index"]])
        lo_hi[0] = min(lo_hi[0], row["sample_index"])
        lo_hi[1] = max(lo_hi[1], row["sample_index"])
    wanted = {(row["step"], row["sample_index"]) for row in rows}
    p = predictions.c
    found: dict[tuple[int, int], tuple[int, int | None]] = {}
    for step, (lo, hi) in bounds.items():
        result = conn.execute(
            select(p.sample_index, p.prompt_text_id, p.truth_text_id).where(
                p.job_id == job_id, p.step == step, p.sample_index.between(lo, hi)
            )
        )
        for sample_index, prompt_id, truth_id in result:
            if (step, sample_index) in wanted:
                found[(step, sample_index)] = (prompt_id, truth_id)
    return found


def ingest(
    db: Database,
    principal: Principal,
    job_id: str,
    items: list[IngestItem],
    scoring: ScoringPool,
) -> dict[str, Any]:
    if principal.job_id is not None and principal.job_id != job_id:
        raise APIError(403, "this job token belongs to another job")
    if not is_valid_job_id(job_id):
        raise not_found()
    owner = (jobs.c.id == job_id, jobs.c.user_id == principal.user_id)
    with db.read() as conn:
        config = conn.scalar(select(jobs.c.config).where(*owner))
    if config is None:
        raise not_found()
    if not items:
        return {"job_id": job_id, "accepted": 0, "created": 0, "updated": 0}
    _reject_judge_metrics(items)
    graded = bool(judges.judges_of(config))
    # Scoring happens before the write lock, in the scoring processes: concurrent writers only
    # queue for the database part. (A job's config never changes after creation, so scoring
    # with it early is safe, and the workers keep its validators compiled.)
    spec = ValidatorSpec.of(config)
    rows = _scored_rows(items, job_id, principal.user_id, spec, scoring)
    with db.write() as conn:
        lock_job(conn, job_id)
        now = utcnow()
        still_there = conn.execute(
            update(jobs)
            .where(*owner)
            .values(
                updated_at=now,
                status=case((jobs.c.status == "pending", "running"), else_=jobs.c.status),
            )
        ).rowcount
        if not still_there:  # deleted since the read above
            raise not_found()
        existing = _existing_rows(conn, job_id, rows)
        replaced_texts = texts.store(conn, job_id, rows, existing.values())
        _upsert_for(conn.dialect).execute(conn, rows, now)
        texts.drop_unused(conn, replaced_texts)
        samples.record(conn, job_id, (row["sample_index"] for row in rows))
        totals = refresh_rounds(conn, job_id, rows, rescan_steps={step for step, _ in existing})
        stream.record_ingest(conn, job_id, rows, totals, now)
        if graded:  # re-sent rows too: their new version is graded again
            keys = [(row["step"], row["sample_index"]) for row in rows]
            judges.enqueue(conn, job_id, principal.user_id, keys, now)
        if db.is_postgres:
            # Delivered at commit to every server process LISTENing (their SSE clients wake up).
            conn.execute(
                text("SELECT pg_notify(:channel, :job_id)"),
                {"channel": stream.NOTIFY_CHANNEL, "job_id": job_id},
            )
    updated = sum(1 for row in rows if (row["step"], row["sample_index"]) in existing)
    return {
        "job_id": job_id,
        "accepted": len(items),
        "created": len(rows) - updated,
        "updated": updated,
        JUDGES_QUEUED: graded,
    }


JUDGES_QUEUED = "_judges_queued"  # internal: the route wakes the judge worker, then drops it


def _reject_judge_metrics(items: list[IngestItem]) -> None:
    """`judge:<name>` metrics are the server's own (model-graded): a client cannot send them."""
    for index, item in enumerate(items):
        for name in item.metrics or ():
            if name.startswith(judges.METRIC_PREFIX):
                message = (
                    f"metric names starting with {judges.METRIC_PREFIX!r} are reserved for judges"
                )
                detail = {
                    "loc": ["predictions", index, "metrics", name],
                    "message": message,
                    "type": "value_error",
                }
                raise APIError(422, f"predictions[{index}] metrics: {message}", details=[detail])
