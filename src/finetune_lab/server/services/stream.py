"""Stream events: recorded inside the ingest transaction, read back by id for SSE clients.

An ingest records one `predictions` event (which rows it wrote: per round, ranges of sample
indexes) and one `round_complete` event per round it touched (that round's totals right after
the commit). Rows are not copied into the event: the stream reads them from `predictions` when
it sends the event, so ingest writes a few hundred bytes instead of doubling its row writes.

Job ids can be taken again after a delete, by another user too; event ids never are. So every
read is tied to the job's owner (not just its id) in the same statement, and a stream ends the
moment its job is no longer its user's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import ColumnElement, Connection, exists, func, insert, or_, select
from starlette.concurrency import run_in_threadpool

from finetune_lab.server.auth import Authenticator, Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import jobs, predictions, stream_events
from finetune_lab.server.errors import DATABASE_UNAVAILABLE, APIError, describe_database_error
from finetune_lab.server.responses import JSON_OPTIONS
from finetune_lab.server.services.queries import (
    PREDICTION_COLUMNS,
    ensure_owned,
    rows_to_dicts,
    trend_point,
)
from finetune_lab.server.services.rollups import RoundKey, RoundTotals

if TYPE_CHECKING:  # notify imports this module's NOTIFY_CHANNEL
    from finetune_lab.server.notify import StreamNotifier

log = logging.getLogger("finetune_lab.server.stream")

# A `predictions` event carries at most this many rows and this many characters of text;
# `truncated: true` tells the client to page the rest from the list endpoint.
MAX_EVENT_ROWS = 1_000
MAX_EVENT_TEXT_CHARS = 2_000_000
TEXT_COLUMNS = ("prompt", "prediction", "ground_truth")
RANGES_PER_QUERY = 200  # sample-index runs per SELECT (bound parameters stay few)
NOTIFY_CHANNEL = "finetune_lab_stream"


def index_ranges(values: Sequence[int]) -> list[list[int]]:
    """Sorted integers as inclusive [lo, hi] runs: a round's batch is usually one run."""
    runs: list[list[int]] = []
    for value in sorted(set(values)):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return runs


def record_ingest(
    conn: Connection,
    job_id: str,
    rows: Sequence[Mapping[str, Any]],
    totals: Mapping[RoundKey, RoundTotals],
    now: datetime,
) -> None:
    """Inside the ingest transaction: the events exist exactly when the rows do."""
    by_round: dict[tuple[int, int], list[int]] = defaultdict(list)
    for row in rows:
        by_round[(row["epoch"], row["step"])].append(row["sample_index"])
    rounds = [
        {"epoch": epoch, "step": step, "count": len(indexes), "ranges": index_ranges(indexes)}
        for (epoch, step), indexes in sorted(by_round.items())
    ]
    events: list[dict[str, Any]] = [
        {
            "job_id": job_id,
            "kind": "predictions",
            "payload": {"count": len(rows), "rounds": rounds},
            "created_at": now,
        }
    ]
    for (step, epoch), round_totals in sorted(totals.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        events.append(
            {
                "job_id": job_id,
                "kind": "round_complete",
                "payload": trend_point(epoch, step, round_totals),
                "created_at": now,
            }
        )
    conn.execute(insert(stream_events), events)


@dataclass(frozen=True)
class StoredEvent:
    id: int
    kind: str
    payload: dict[str, Any]


def _owner_still(job_id: str, user_id: int) -> ColumnElement[bool]:
    """True while `job_id` belongs to `user_id`. Each stream query carries it, so one statement
    (one snapshot, on PostgreSQL too) never mixes a deleted job with the next owner of its id."""
    return exists().where(jobs.c.id == job_id, jobs.c.user_id == user_id)


def latest_event_id(db: Database, job_id: str, user_id: int) -> int:
    with db.read() as conn:
        value = conn.scalar(
            select(func.max(stream_events.c.id)).where(
                stream_events.c.job_id == job_id, _owner_still(job_id, user_id)
            )
        )
    return int(value or 0)


def newest_event_id(db: Database) -> int:
    """The newest event of any job: a resume position beyond it was issued by another database
    (a server that lost its own), never by this one."""
    with db.read() as conn:
        return int(conn.scalar(select(func.max(stream_events.c.id))) or 0)


def read_events(
    db: Database, job_id: str, user_id: int, after_id: int, limit: int
) -> list[tuple[int, str, Any]] | None:
    """The next events after `after_id`, rendered; None once the job is no longer the user's
    (deleted, or deleted and its id taken by someone else): the stream must end."""
    e = stream_events.c
    owned = _owner_still(job_id, user_id)
    query = (
        select(e.id, e.kind, e.payload)
        .where(e.job_id == job_id, e.id > after_id, owned)
        .order_by(e.id)
        .limit(limit)
    )
    with db.read() as conn:
        if not conn.scalar(select(owned)):
            return None
        events = [StoredEvent(int(r.id), r.kind, r.payload) for r in conn.execute(query)]
        return [
            (event.id, event.kind, event_data(conn, job_id, user_id, event)) for event in events
        ]


def _text_size(row: Mapping[str, Any]) -> int:
    return sum(len(row[name] or "") for name in TEXT_COLUMNS)


def predictions_data(
    conn: Connection, job_id: str, user_id: int, payload: Mapping[str, Any]
) -> dict[str, Any]:
    """The rows a `predictions` event names, as the list endpoint returns them, capped (only
    rows the user wrote: a row of the id's next owner never matches)."""
    p = predictions.c
    out: list[dict[str, Any]] = []
    budget = MAX_EVENT_TEXT_CHARS
    truncated = False
    for round_ in payload["rounds"]:
        ranges = round_["ranges"]
        for start in range(0, len(ranges), RANGES_PER_QUERY):
            chunk = ranges[start : start + RANGES_PER_QUERY]
            query = (
                select(*PREDICTION_COLUMNS)
                .where(
                    p.job_id == job_id,
                    p.user_id == user_id,
                    p.step == round_["step"],
                    or_(*(p.sample_index.between(lo, hi) for lo, hi in chunk)),
                )
                .order_by(p.sample_index)
                .limit(MAX_EVENT_ROWS - len(out) + 1)
            )
            for row in rows_to_dicts(conn.execute(query)):
                size = _text_size(row)
                if len(out) >= MAX_EVENT_ROWS or size > budget:
                    truncated = True
                    break
                budget -= size
                out.append(row)
            if truncated:
                break
        if truncated:
            break
    return {
        "job_id": job_id,
        "count": payload["count"],
        "rounds": [
            {"epoch": r["epoch"], "step": r["step"], "count": r["count"]} for r in payload["rounds"]
        ],
        "predictions": out,
        "truncated": truncated or len(out) < payload["count"],
    }


def event_data(conn: Connection, job_id: str, user_id: int, event: StoredEvent) -> dict[str, Any]:
    if event.kind == "predictions":
        return predictions_data(conn, job_id, user_id, event.payload)
    if event.kind == "prediction_updated":  # rows graded since (reason, judge) or re-scored
        extra: dict[str, Any] = {
            k: event.payload[k] for k in ("reason", "judge") if k in event.payload
        }
        return {**predictions_data(conn, job_id, user_id, event.payload), **extra}
    return {"job_id": job_id, **event.payload}


# --- the SSE loop ---------------------------------------------------------------------------

EVENTS_PER_READ = 50
RECONNECT_MS = 2_000  # the `retry:` an EventSource waits before reconnecting


def frame(event_id: int, kind: str, data: Any) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event_id,
        kind.encode(),
        orjson.dumps(data, option=JSON_OPTIONS),
    )


def heartbeat(job_id: str, last_event_id: int) -> bytes:
    now = datetime.now(timezone.utc)
    data = {"job_id": job_id, "last_event_id": last_event_id, "time": now}
    return frame(last_event_id, "heartbeat", data)


def still_allowed(
    db: Database, authenticator: Authenticator, secret: str | None, job_id: str
) -> bool:
    """Re-checked at every heartbeat: a revoked key or an expired session ends the stream (the
    client's reconnect then gets the 401). Ownership of the job is checked at every read too,
    inside the read itself (read_events). Blocking: call it from a worker thread."""
    principal = authenticator.authenticate(secret) if secret else None
    if principal is None or not principal.allows("training"):
        return False
    try:
        ensure_owned(db, principal, job_id)
    except APIError:
        return False
    return True


async def sse_events(
    db: Database,
    principal: Principal,
    job_id: str,
    start: int,
    *,
    notifier: StreamNotifier,
    recheck: Callable[[], bool],
    heartbeat_s: float,
    poll_s: float,
) -> AsyncIterator[bytes]:
    """The stream's bytes from event `start` on: events as they are committed (woken by
    `notifier`, re-read at least every `poll_s`), a heartbeat after `heartbeat_s` idle
    seconds, and `recheck()` (blocking; see still_allowed) every `heartbeat_s`. Ends when the
    job is no longer the user's or the credentials no longer allow the stream."""
    loop = asyncio.get_running_loop()
    last = start
    yield b"retry: %d\n" % RECONNECT_MS + heartbeat(job_id, last)
    last_sent = last_check = loop.time()
    outage = False  # the database was unreachable at the last read
    with notifier.subscribe(job_id) as wake:
        while True:
            wake.clear()  # before the read: a commit after it sets the flag again
            try:
                read = await run_in_threadpool(
                    read_events, db, job_id, principal.user_id, last, EVENTS_PER_READ
                )
                outage = False
            except DATABASE_UNAVAILABLE as exc:
                # Keep the client connected (heartbeats go on) and read again at the next
                # poll: the stream resumes by itself once the database is back.
                if not outage:
                    log.warning(
                        "stream of %s waits for the database: %s",
                        job_id,
                        describe_database_error(exc),
                    )
                outage = True
                read = []
            if read is None:  # deleted (its id may have a new owner): the reconnect gets 404
                return
            batch = read
            for event_id, kind, data in batch:
                yield frame(event_id, kind, data)
                last = event_id
            if batch:
                last_sent = loop.time()
                if len(batch) == EVENTS_PER_READ:
                    continue
            due = min(last_sent, last_check) + heartbeat_s - loop.time()
            timeout = max(0.0, min(poll_s, due))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)
            now = loop.time()
            if now - last_check >= heartbeat_s:  # busy streams are checked too
                try:
                    allowed = await run_in_threadpool(recheck)
                except DATABASE_UNAVAILABLE:
                    allowed = True  # cannot tell now: checked again at the next heartbeat
                if not allowed:
                    return
                last_check = now
            if now - last_sent >= heartbeat_s:
                yield heartbeat(job_id, last)
                last_sent = now
