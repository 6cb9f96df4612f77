"""Analytics traces: one row per span (a model call of ours, one a client recorded, or one
sent over OTLP), newest first. Rows sharing a `trace_id` form one trace, linked by
`parent_span_id`."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, and_, insert, null, or_, select, text, update

from finetune_lab.schema_serving import Trace, TraceCreate
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.serving_tables import traces
from finetune_lab.server.errors import validation_error
from finetune_lab.server.services.rows import plain
from finetune_lab.server.services.tokens import utcnow

TRACE_COLUMNS = tuple(traces.c[name] for name in Trace.model_fields)


def as_utc(value: datetime) -> datetime:
    """Stored times are UTC (SQLite keeps no zone); naive input is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def parse_time(value: str | None, name: str, *, end: bool = False) -> datetime | None:
    """ISO date or datetime; a bare date as an end bound means the end of that day."""
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(), tzinfo=timezone.utc)
            return start + timedelta(days=1) if end else start
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        message = f"{name} must be an ISO 8601 date or datetime, got {value!r}"
        raise validation_error(
            message, [{"loc": ["query", name], "message": message, "type": "value_error"}]
        ) from None


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start > end:
        message = "start_date is after end_date"
        raise validation_error(
            message, [{"loc": ["query", "start_date"], "message": message, "type": "value_error"}]
        )


def new_trace_id() -> str:
    """A W3C / OTLP trace id: 16 random bytes as lowercase hex."""
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def span_defaults(values: dict[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """Fill what a span left out, so every stored span has ids and a time window:
    ids are new (a root span of a new trace), times follow from each other and the latency
    (start = end - latency, end = start + latency), and `created_at` (what pages and buckets
    order by) is when the span started."""
    for name in ("created_at", "start_time", "end_time"):
        if values.get(name) is not None:
            values[name] = as_utc(values[name])
    values.setdefault("trace_id", None)
    values["trace_id"] = values["trace_id"] or new_trace_id()
    values["span_id"] = values.get("span_id") or new_span_id()
    start, end = values.get("start_time"), values.get("end_time")
    latency = values.get("latency_ms")
    if latency is None and start is not None and end is not None:
        values["latency_ms"] = latency = (end - start).total_seconds() * 1000.0
    span = timedelta(milliseconds=latency or 0.0)
    if start is None:
        start = (end or values.get("created_at") or now or utcnow()) - span
        values["start_time"] = start
    if end is None and latency is not None:
        values["end_time"] = start + span
    values.setdefault("created_at", None)
    values["created_at"] = values["created_at"] or start
    return values


def insert_trace(conn: Connection, user_id: int, **values: Any) -> int:
    values.setdefault("created_at", utcnow())
    values.setdefault("streamed", False)
    result = conn.execute(insert(traces).values(user_id=user_id, **values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def insert_spans(conn: Connection, user_id: int, spans: Iterable[dict[str, Any]]) -> int:
    """Many spans in one statement (the caller's transaction: all of them or none)."""
    rows = [{"streamed": False, **span, "user_id": user_id} for span in spans]
    if rows:
        columns = {name for row in rows for name in row}
        conn.execute(insert(traces), [{name: row.get(name) for name in columns} for row in rows])
    return len(rows)


def record_trace(db: Database, user_id: int, **values: Any) -> int:
    with db.write() as conn:
        return insert_trace(conn, user_id, **values)


def create_trace(db: Database, principal: Principal, body: TraceCreate) -> dict[str, Any]:
    """Record a span; one naming a (trace_id, span_id) the caller already stored replaces it
    (a client re-posting a span as it progresses, as the upstream SDKs' server allows)."""
    explicit = body.trace_id is not None and body.span_id is not None
    values = span_defaults(body.model_dump(exclude_none=True))
    if body.total_tokens is None and (
        body.prompt_tokens is not None or body.completion_tokens is not None
    ):
        values["total_tokens"] = (body.prompt_tokens or 0) + (body.completion_tokens or 0)
    with db.write() as conn:
        existing = _stored_span(conn, principal.user_id, values) if explicit else None
        if existing is None:
            row_id = insert_trace(conn, principal.user_id, **values)
        else:
            row_id = existing
            conn.execute(update(traces).where(traces.c.id == row_id).values(_replacing(values)))
        row = conn.execute(select(*TRACE_COLUMNS).where(traces.c.id == row_id)).one()
    return plain(row)


def _stored_span(conn: Connection, user_id: int, values: dict[str, Any]) -> int | None:
    """The caller's oldest row of this (trace_id, span_id), under a lock on that pair
    (SQLite: the write transaction; PostgreSQL: an advisory lock), so two posts of one new
    span cannot both insert."""
    if conn.dialect.name == "postgresql":
        key = f"span:{user_id}:{values['trace_id']}:{values['span_id']}"
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})
    t = traces.c
    found = conn.execute(
        select(t.id)
        .where(t.user_id == user_id, t.trace_id == values["trace_id"])
        .where(t.span_id == values["span_id"])
        .order_by(t.id)
        .limit(1)
    ).scalar()
    return None if found is None else int(found)


def _replacing(values: dict[str, Any]) -> dict[str, Any]:
    """Every column but the row's id and owner, from the new span (what it left out: empty)."""
    row: dict[str, Any] = {"streamed": False, **values}
    return {
        c.name: null() if row.get(c.name) is None else row[c.name]
        for c in traces.c
        if c.name not in ("id", "user_id")
    }


@dataclass(frozen=True)
class TraceFilters:
    model: str | None = None
    status: str | None = None
    operation: str | None = None
    test_run_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    trace_id: str | None = None
    conversation_id: str | None = None
    job_id: str | None = None

    # Like every filter, these match your own spans only: another user's job id (or trace
    # id) finds nothing, exactly as an id nobody has does.
    EXACT = (
        "model",
        "status",
        "operation",
        "test_run_id",
        "trace_id",
        "conversation_id",
        "job_id",
    )

    def clauses(self, user_id: int) -> list[ColumnElement[bool]]:
        t = traces.c
        where: list[ColumnElement[bool]] = [t.user_id == user_id]
        for name in self.EXACT:
            value = getattr(self, name)
            if value is not None:
                where.append(t[name] == value)
        if self.start is not None:
            where.append(t.created_at >= self.start)
        if self.end is not None:
            where.append(t.created_at < self.end)
        return where


def _encode_cursor(created_at: datetime, trace_id: int) -> str:
    raw = orjson.dumps([as_utc(created_at).isoformat(), trace_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(value, list) and len(value) == 2 and type(value[1]) is int:
            return as_utc(datetime.fromisoformat(value[0])), value[1]
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        pass
    raise validation_error(
        "cursor is not valid: pass next_cursor from a previous page unchanged",
        [{"loc": ["query", "cursor"], "message": "invalid cursor", "type": "value_error"}],
    )


def list_traces(
    db: Database,
    principal: Principal,
    filters: TraceFilters,
    *,
    limit: int,
    cursor: str | None,
    offset: int = 0,
) -> dict[str, Any]:
    """Newest first; keyset pages on (created_at, id): deep pages cost what the first does.
    `offset` (rows skipped after the cursor) only for the upstream SDK, which pages that way."""
    where = filters.clauses(principal.user_id)
    if cursor:
        at, trace_id = _decode_cursor(cursor)
        t = traces.c
        where.append(or_(t.created_at < at, and_(t.created_at == at, t.id < trace_id)))
    query = (
        select(*TRACE_COLUMNS)
        .where(*where)
        .order_by(traces.c.created_at.desc(), traces.c.id.desc())
        .limit(limit + 1)
    )
    if offset:
        query = query.offset(offset)
    with db.read() as conn:
        rows = conn.execute(query).all()
    page = [plain(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = _encode_cursor(last["created_at"], last["id"])
    return {"traces": page, "next_cursor": next_cursor}
