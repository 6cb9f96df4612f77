"""`/api/analytics`: traces (list with filters, record external calls) and aggregates."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from finetune_lab.schema import MAX_PAGE_LIMIT
from finetune_lab.schema_serving import (
    AnalyticsData,
    Granularity,
    JobServing,
    Trace,
    TraceCreate,
    TracesPage,
    TraceStatus,
)
from finetune_lab.server import upstream_dialect as dialect
from finetune_lab.server.deps import Db, Production
from finetune_lab.server.errors import validation_error
from finetune_lab.server.responses import JSONBytesResponse
from finetune_lab.server.services import analytics, traces
from finetune_lab.server.services.job_serving import job_serving
from finetune_lab.server.services.traces import TraceFilters, check_range, parse_time
from finetune_lab.server.upstream_dialect import UpstreamClient

router = APIRouter(prefix="/api/analytics", tags=["analytics"])
NoNul = r"^[^\x00]*$"


def one_spelling(value: str | None, alias: str | None, name: str, alias_name: str) -> str | None:
    """A query parameter or its upstream-SDK spelling, never both (422: which one is meant?)."""
    if value is not None and alias is not None:
        message = f"{name} and {alias_name} are the same parameter: send one of them"
        raise validation_error(
            message, [{"loc": ["query", alias_name], "message": message, "type": "value_error"}]
        )
    return alias if value is None else value


@router.get("/traces", response_model=TracesPage)
def list_traces(
    model: str | None = Query(None, max_length=512, pattern=NoNul),
    status: TraceStatus | None = None,
    operation: str | None = Query(None, max_length=512, pattern=NoNul),
    test_run_id: str | None = Query(None, max_length=64, pattern=NoNul),
    trace_id: str | None = Query(
        None, max_length=64, pattern=NoNul, description="one trace's spans"
    ),
    conversation_id: str | None = Query(None, max_length=512, pattern=NoNul),
    job_id: str | None = Query(
        None,
        max_length=128,
        pattern=NoNul,
        description="spans of calls to the checkpoints of that training job of yours",
    ),
    start_date: str | None = Query(None, max_length=64, description="ISO date or datetime"),
    end_date: str | None = Query(None, max_length=64, description="exclusive; a date: its end"),
    limit: int = Query(50, ge=1, le=MAX_PAGE_LIMIT),
    cursor: str | None = Query(None, max_length=512),
    *,
    request: Request,
    upstream: UpstreamClient,
    principal: Production,
    db: Db,
) -> JSONBytesResponse:
    """Your spans, newest first (by start); pass `next_cursor` back as `cursor` for the next
    page. `trace_id` gives one trace's spans (its tree: `span_id`/`parent_span_id`); `job_id`
    the spans of calls to models registered with that job (as `/jobs/{job_id}` counts them)."""
    offset = dialect.offset(request) if upstream else 0
    start = parse_time(start_date, "start_date")
    end = parse_time(end_date, "end_date", end=True)
    check_range(start, end)
    filters = TraceFilters(
        model,
        status,
        operation,
        test_run_id,
        start,
        end,
        trace_id=trace_id,
        conversation_id=conversation_id,
        job_id=job_id,
    )
    page = traces.list_traces(db, principal, filters, limit=limit, cursor=cursor, offset=offset)
    if upstream:
        return JSONBytesResponse(dialect.traces_page(page, user=principal.user))
    return JSONBytesResponse(page)


@router.post("/traces", status_code=201, response_model=Trace)
def create_trace(
    body: TraceCreate, upstream: UpstreamClient, principal: Production, db: Db
) -> dict[str, Any] | JSONBytesResponse:
    """Record a span: a call your own code made (to any model), so it shows in the traces and
    the aggregates. The upstream SDKs' field names are accepted too (see each field)."""
    trace = traces.create_trace(db, principal, body)
    if upstream:
        return JSONBytesResponse(dialect.span(trace, user=principal.user), status_code=201)
    return trace


@router.get("/data", response_model=AnalyticsData)
def analytics_data(
    start_date: str | None = Query(None, max_length=64, description="default: a day/30 days ago"),
    end_date: str | None = Query(None, max_length=64, description="exclusive; default: now"),
    granularity: Granularity = "day",
    model: str | None = Query(None, max_length=512, pattern=NoNul),
    operation: str | None = Query(None, max_length=512, pattern=NoNul),
    start_date_upstream: str | None = Query(
        None, alias="startDate", max_length=64, description="alias of start_date (upstream SDKs)"
    ),
    end_date_upstream: str | None = Query(
        None, alias="endDate", max_length=64, description="alias of end_date (upstream SDKs)"
    ),
    *,
    upstream: UpstreamClient,
    principal: Production,
    db: Db,
) -> JSONBytesResponse:
    """Counts, tokens, error rate and latency p50/p95 per time bucket, per model and in total.
    `startDate`/`endDate` (the upstream SDKs' spelling) mean `start_date`/`end_date`."""
    start_date = one_spelling(start_date, start_date_upstream, "start_date", "startDate")
    end_date = one_spelling(end_date, end_date_upstream, "end_date", "endDate")
    start = parse_time(start_date, "start_date")
    end = parse_time(end_date, "end_date", end=True)
    result = analytics.data(
        db,
        principal,
        start=start,
        end=end,
        granularity=granularity,
        model=model,
        operation=operation,
    )
    return JSONBytesResponse(dialect.analytics_data(result) if upstream else result)


@router.get("/jobs/{job_id}", response_model=JobServing)
def serving_of_job(job_id: str, principal: Production, db: Db) -> JSONBytesResponse:
    """How the job's checkpoints are served: calls, tokens, error rate and latency p50/p95 of
    the spans of models registered with this `job_id`, in total and per checkpoint (404 unless
    the job is yours)."""
    return JSONBytesResponse(job_serving(db, principal, job_id))
