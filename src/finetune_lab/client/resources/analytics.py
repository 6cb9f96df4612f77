"""`client.analytics`: traces (spans) of model calls (list, iterate, record) and usage
aggregates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from typing import Any

from finetune_lab.client._pagination import CursorWalk, aiter_rows, iter_rows
from finetune_lab.client._transport import (
    AsyncTransport,
    RequestSpec,
    SyncTransport,
    parse_model,
    path_segment,
)
from finetune_lab.schema_serving import (
    AnalyticsData,
    Granularity,
    JobServing,
    Trace,
    TracesPage,
    TraceStatus,
)

_PREFIX = "/api/analytics"
When = str | date | datetime | None


def _when(value: When) -> str | None:
    return value.isoformat() if isinstance(value, date) else value


def _traces_spec(
    model: str | None,
    status: TraceStatus | None,
    operation: str | None,
    test_run_id: str | None,
    start_date: When,
    end_date: When,
    trace_id: str | None,
    conversation_id: str | None,
    job_id: str | None,
    limit: int,
    cursor: str | None,
) -> RequestSpec[TracesPage]:
    params = {
        "trace_id": trace_id,
        "conversation_id": conversation_id,
        "job_id": job_id,
        "model": model,
        "status": status,
        "operation": operation,
        "test_run_id": test_run_id,
        "start_date": _when(start_date),
        "end_date": _when(end_date),
        "limit": limit,
        "cursor": cursor,
    }
    return RequestSpec("GET", f"{_PREFIX}/traces", parse_model(TracesPage), params=params)


_TraceFilters = tuple[
    str | None,
    TraceStatus | None,
    str | None,
    str | None,
    When,
    When,
    str | None,
    str | None,
    str | None,
]


def _walk(filters: _TraceFilters, page_size: int) -> CursorWalk[TracesPage, Trace]:
    def request(cursor: str | None) -> RequestSpec[TracesPage]:
        return _traces_spec(*filters, page_size, cursor)

    return CursorWalk(request, lambda page: page.traces)


def _create_spec(model: str, fields: dict[str, Any]) -> RequestSpec[Trace]:
    body = {"model": model, **{k: v for k, v in fields.items() if v is not None}}
    if isinstance(body.get("created_at"), datetime):
        body["created_at"] = body["created_at"].isoformat()
    return RequestSpec("POST", f"{_PREFIX}/traces", parse_model(Trace), json=body)


def _data_spec(
    start_date: When,
    end_date: When,
    granularity: Granularity,
    model: str | None,
    operation: str | None,
) -> RequestSpec[AnalyticsData]:
    params = {
        "start_date": _when(start_date),
        "end_date": _when(end_date),
        "granularity": granularity,
        "model": model,
        "operation": operation,
    }
    return RequestSpec("GET", f"{_PREFIX}/data", parse_model(AnalyticsData), params=params)


def _job_serving_spec(job_id: str) -> RequestSpec[JobServing]:
    path = f"{_PREFIX}/jobs/{path_segment(job_id)}"
    return RequestSpec("GET", path, parse_model(JobServing))


class Analytics:
    """Sync access to `/api/analytics`."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def traces(
        self,
        *,
        model: str | None = None,
        status: TraceStatus | None = None,
        operation: str | None = None,
        test_run_id: str | None = None,
        start_date: When = None,
        end_date: When = None,
        limit: int = 50,
        cursor: str | None = None,
        trace_id: str | None = None,
        conversation_id: str | None = None,
        job_id: str | None = None,
    ) -> TracesPage:
        """One page of spans, newest first; pass `page.next_cursor` as `cursor` for the next.
        `trace_id` gives one trace's spans, `conversation_id` one conversation's, `job_id`
        the calls to the checkpoints of one of your training jobs."""
        spec = _traces_spec(
            model,
            status,
            operation,
            test_run_id,
            start_date,
            end_date,
            trace_id,
            conversation_id,
            job_id,
            limit,
            cursor,
        )
        return self._transport.execute(spec)

    def iter_traces(
        self,
        *,
        model: str | None = None,
        status: TraceStatus | None = None,
        operation: str | None = None,
        test_run_id: str | None = None,
        start_date: When = None,
        end_date: When = None,
        trace_id: str | None = None,
        conversation_id: str | None = None,
        job_id: str | None = None,
        page_size: int = 500,
    ) -> Iterator[Trace]:
        """Every matching trace, newest first, across pages (the filters of `traces()`)."""
        filters = (
            model,
            status,
            operation,
            test_run_id,
            start_date,
            end_date,
            trace_id,
            conversation_id,
            job_id,
        )
        return iter_rows(self._transport, _walk(filters, page_size))

    def create_trace(
        self,
        model: str,
        *,
        operation: str | None = None,
        status: TraceStatus | None = None,
        latency_ms: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
        error: str | None = None,
        error_type: str | None = None,
        input: Any = None,
        output: str | None = None,
        metadata: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> Trace:
        """Record a call your own code made, so it counts in `data()`."""
        fields = dict(locals())
        for name in ("self", "model"):
            fields.pop(name)
        return self._transport.execute(_create_spec(model, fields))

    def data(
        self,
        *,
        start_date: When = None,
        end_date: When = None,
        granularity: Granularity = "day",
        model: str | None = None,
        operation: str | None = None,
    ) -> AnalyticsData:
        """Counts, tokens, error rate and latency p50/p95 per bucket, per model and in total."""
        spec = _data_spec(start_date, end_date, granularity, model, operation)
        return self._transport.execute(spec)

    def job_serving(self, job_id: str) -> JobServing:
        """How a training job's checkpoints are served (models registered with its `job_id`):
        calls, tokens, error rate and latency p50/p95 in total and per checkpoint."""
        return self._transport.execute(_job_serving_spec(job_id))


class AsyncAnalytics:
    """Async access to `/api/analytics`; same methods as `Analytics`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def traces(
        self,
        *,
        model: str | None = None,
        status: TraceStatus | None = None,
        operation: str | None = None,
        test_run_id: str | None = None,
        start_date: When = None,
        end_date: When = None,
        limit: int = 50,
        cursor: str | None = None,
        trace_id: str | None = None,
        conversation_id: str | None = None,
        job_id: str | None = None,
    ) -> TracesPage:
        """One page of spans, newest first; pass `page.next_cursor` as `cursor` for the next.
        `trace_id` gives one trace's spans, `conversation_id` one conversation's, `job_id`
        the calls to the checkpoints of one of your training jobs."""
        spec = _traces_spec(
            model,
            status,
            operation,
            test_run_id,
            start_date,
            end_date,
            trace_id,
            conversation_id,
            job_id,
            limit,
            cursor,
        )
        return await self._transport.execute(spec)

    def iter_traces(
        self,
        *,
        model: str | None = None,
        status: TraceStatus | None = None,
        operation: str | None = None,
        test_run_id: str | None = None,
        start_date: When = None,
        end_date: When = None,
        trace_id: str | None = None,
        conversation_id: str | None = None,
        job_id: str | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[Trace]:
        """Every matching trace, newest first, across pages (the filters of `traces()`)."""
        filters = (
            model,
            status,
            operation,
            test_run_id,
            start_date,
            end_date,
            trace_id,
            conversation_id,
            job_id,
        )
        return aiter_rows(self._transport, _walk(filters, page_size))

    async def create_trace(
        self,
        model: str,
        *,
        operation: str | None = None,
        status: TraceStatus | None = None,
        latency_ms: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
        error: str | None = None,
        error_type: str | None = None,
        input: Any = None,
        output: str | None = None,
        metadata: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> Trace:
        """Record a call your own code made, so it counts in `data()`."""
        fields = dict(locals())
        for name in ("self", "model"):
            fields.pop(name)
        return await self._transport.execute(_create_spec(model, fields))

    async def data(
        self,
        *,
        start_date: When = None,
        end_date: When = None,
        granularity: Granularity = "day",
        model: str | None = None,
        operation: str | None = None,
    ) -> AnalyticsData:
        """Counts, tokens, error rate and latency p50/p95 per bucket, per model and in total."""
        spec = _data_spec(start_date, end_date, granularity, model, operation)
        return await self._transport.execute(spec)

    async def job_serving(self, job_id: str) -> JobServing:
        """How a training job's checkpoints are served (models registered with its `job_id`):
        calls, tokens, error rate and latency p50/p95 in total and per checkpoint."""
        return await self._transport.execute(_job_serving_spec(job_id))


__all__ = ["Analytics", "AsyncAnalytics"]
