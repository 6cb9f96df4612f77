"""`GET /api/training/predictions/{job_id}/stream`: Server-Sent Events of a job's ingests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from finetune_lab.schema import MAX_INT
from finetune_lab.server.auth import Authenticator, Principal, credential_from, require_scope
from finetune_lab.server.db import Database
from finetune_lab.server.errors import DATABASE_UNAVAILABLE, APIError, describe_database_error
from finetune_lab.server.notify import PostgresListener, StreamNotifier
from finetune_lab.server.responses import JSON_OPTIONS, get_db
from finetune_lab.server.services import queries, stream
from finetune_lab.server.settings import Settings

log = logging.getLogger("finetune_lab.server.stream")
router = APIRouter(prefix="/api/training/predictions", tags=["predictions"])
training = require_scope("training")

EVENTS_PER_READ = 50
RECONNECT_MS = 2_000  # the `retry:` an EventSource waits before reconnecting
STREAM_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # proxies such as nginx must not buffer the stream
}
EVENT_SCHEMA = {
    "type": "string",
    "description": (
        "text/event-stream: `id`, `event` (predictions | round_complete | heartbeat) and "
        "one JSON `data` line per event; shapes in the PredictionsEvent, RoundCompleteEvent "
        "and HeartbeatEvent schemas"
    ),
}


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


def _still_allowed(request: Request, db: Database, job_id: str) -> bool:
    """Re-checked at every heartbeat: a revoked key or an expired session ends the stream (the
    client's reconnect then gets the 401). Ownership of the job is checked at every read too,
    inside the read itself (stream.read_events)."""
    secret = credential_from(request.headers)
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(secret) if secret else None
    if principal is None or not principal.allows("training"):
        return False
    try:
        queries.ensure_owned(db, principal, job_id)
    except APIError:
        return False
    return True


async def _events(
    request: Request, db: Database, principal: Principal, job_id: str, start: int
) -> AsyncIterator[bytes]:
    settings: Settings = request.app.state.settings
    notifier: StreamNotifier = request.app.state.stream_notifier
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
                    stream.read_events, db, job_id, principal.user_id, last, EVENTS_PER_READ
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
            due = min(last_sent, last_check) + settings.stream_heartbeat_s - loop.time()
            timeout = max(0.0, min(settings.stream_poll_s, due))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)
            now = loop.time()
            if now - last_check >= settings.stream_heartbeat_s:  # busy streams are checked too
                try:
                    allowed = await run_in_threadpool(_still_allowed, request, db, job_id)
                except DATABASE_UNAVAILABLE:
                    allowed = True  # cannot tell now: checked again at the next heartbeat
                if not allowed:
                    return
                last_check = now
            if now - last_sent >= settings.stream_heartbeat_s:
                yield heartbeat(job_id, last)
                last_sent = now


@router.get(
    "/{job_id}/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events",
            "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
        }
    },
)
async def stream_predictions(
    request: Request,
    job_id: str,
    last_event_id: int | None = Query(
        None,
        ge=0,
        le=MAX_INT,
        description="Replay events after this id (for clients that cannot send headers)",
    ),
    last_event_id_header: int | None = Header(
        None,
        alias="Last-Event-ID",
        ge=0,
        le=MAX_INT,
        description="Replay events after this id (sent by EventSource on reconnect)",
    ),
    principal: Principal = Depends(training),
    db: Database = Depends(get_db),
) -> StreamingResponse:
    """Live events of a job: `predictions` (one per ingest batch), `round_complete` (each touched
    round's totals after that ingest) and `heartbeat`. Every event has an `id:`; send the last
    one back as `Last-Event-ID` (or `last_event_id`) to replay what was missed. Without it
    the stream starts at the job's newest event (its first heartbeat carries that id)."""
    await run_in_threadpool(queries.ensure_owned, db, principal, job_id)
    listener: PostgresListener | None = request.app.state.stream_listener
    if listener is not None:
        await listener.ensure_listening()
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    if resume is None:
        resume = await run_in_threadpool(stream.latest_event_id, db, job_id, principal.user_id)
    elif resume > await run_in_threadpool(stream.newest_event_id, db):
        resume = 0  # a position from another database (this one never issued it): replay all
    return StreamingResponse(
        _events(request, db, principal, job_id, resume),
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
    )
