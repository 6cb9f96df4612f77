"""`GET /api/training/predictions/{job_id}/stream`: Server-Sent Events of a job's ingests.

The route checks the caller and picks the resume position; the event loop (reads, wake-ups,
heartbeats and the credential re-check) is `services.stream.sse_events`."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from finetune_lab.schema import MAX_INT
from finetune_lab.server.auth import credential_from
from finetune_lab.server.deps import AppSettings, AuthenticatorDep, Db, Listener, Notifier, Training
from finetune_lab.server.services import queries, stream

router = APIRouter(prefix="/api/training/predictions", tags=["predictions"])

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
    *,
    principal: Training,
    db: Db,
    settings: AppSettings,
    authenticator: AuthenticatorDep,
    notifier: Notifier,
    listener: Listener,
) -> StreamingResponse:
    """Live events of a job: `predictions` (one per ingest batch), `round_complete` (each touched
    round's totals after that ingest) and `heartbeat`. Every event has an `id:`; send the last
    one back as `Last-Event-ID` (or `last_event_id`) to replay what was missed. Without it
    the stream starts at the job's newest event (its first heartbeat carries that id)."""
    await run_in_threadpool(queries.ensure_owned, db, principal, job_id)
    if listener is not None:
        await listener.ensure_listening()
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    if resume is None:
        resume = await run_in_threadpool(stream.latest_event_id, db, job_id, principal.user_id)
    elif resume > await run_in_threadpool(stream.newest_event_id, db):
        resume = 0  # a position from another database (this one never issued it): replay all
    still_allowed = partial(
        stream.still_allowed, db, authenticator, credential_from(request.headers), job_id
    )
    events = stream.sse_events(
        db,
        principal,
        job_id,
        resume,
        notifier=notifier,
        recheck=still_allowed,
        heartbeat_s=settings.stream_heartbeat_s,
        poll_s=settings.stream_poll_s,
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
    )
