"""Analytics traces: one row per model call (ours or recorded by a client), newest first."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, and_, insert, or_, select

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


def insert_trace(conn: Connection, user_id: int, **values: Any) -> int:
    values.setdefault("created_at", utcnow())
    values.setdefault("streamed", False)
    result = conn.execute(insert(traces).values(user_id=user_id, **values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def record_trace(db: Database, user_id: int, **values: Any) -> int:
    with db.write() as conn:
        return insert_trace(conn, user_id, **values)


def create_trace(db: Database, principal: Principal, body: TraceCreate) -> dict[str, Any]:
    values = body.model_dump(exclude_none=True)
    if "created_at" in values:
        values["created_at"] = as_utc(values["created_at"])
    if body.total_tokens is None and (
        body.prompt_tokens is not None or body.completion_tokens is not None
    ):
        values["total_tokens"] = (body.prompt_tokens or 0) + (body.completion_tokens or 0)
    with db.write() as conn:
        trace_id = insert_trace(conn, principal.user_id, **values)
        row = conn.execute(select(*TRACE_COLUMNS).where(traces.c.id == trace_id)).one()
    return plain(row)


@dataclass(frozen=True)
class TraceFilters:
    model: str | None = None
    status: str | None = None
    operation: str | None = None
    test_run_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def clauses(self, user_id: int) -> list[ColumnElement[bool]]:
        t = traces.c
        where: list[ColumnElement[bool]] = [t.user_id == user_id]
        for name in ("model", "status", "operation", "test_run_id"):
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
    db: Database, principal: Principal, filters: TraceFilters, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Newest first; keyset pages on (created_at, id): deep pages cost what the first does."""
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
    with db.read() as conn:
        rows = conn.execute(query).all()
    page = [plain(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = _encode_cursor(last["created_at"], last["id"])
    return {"traces": page, "next_cursor": next_cursor}
