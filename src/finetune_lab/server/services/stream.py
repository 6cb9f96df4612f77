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

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, exists, func, insert, or_, select

from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import jobs, predictions, stream_events
from finetune_lab.server.services.queries import PREDICTION_COLUMNS, rows_to_dicts, trend_point
from finetune_lab.server.services.rollups import RoundKey, RoundTotals

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
