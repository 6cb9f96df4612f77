"""Answers in the spelling the upstream TypeScript SDK (finetune-lab-sdk 0.6) reads.

That SDK calls our paths unchanged but reads camelCase spans, `count`/`hasMore`,
`summary.totalRequests`... and names itself only by `User-Agent: finetune-lab-sdk/<version>`
(no Accept, no query). So that header picks the shape of the answer: one table per endpoint
maps our answer onto the fields its code reads, after our route has done all the work. Anyone
else gets our shapes untouched; errors keep our JSON error body. Every answer on these paths
says `Vary: User-Agent`, so a cache never hands one client's shape to the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from finetune_lab.schema import MAX_INT
from finetune_lab.server.errors import validation_error

AGENT_PREFIX = "finetune-lab-sdk/"  # ours send finetune-lab-python/ and finetune-lab-node/

#: The paths whose answers depend on the User-Agent (their error answers included).
VARY_PATHS = re.compile(
    r"^/api/(?:analytics/(?:traces|data)|batch-testing/(?:run|cancel|status/[^/]+)"
    r"|training/predictions/[^/]+)$"
)
VARY_HEADERS = [(b"vary", b"User-Agent")]


def is_upstream(user_agent: str | None) -> bool:
    return user_agent is not None and user_agent.lower().startswith(AGENT_PREFIX)


async def _upstream(request: Request) -> bool:
    """Async: a sync dependency costs a thread hop per request."""
    return is_upstream(request.headers.get("user-agent"))


#: A route parameter: True when the caller is the upstream TypeScript SDK.
UpstreamClient = Annotated[bool, Depends(_upstream)]


def vary_headers(path: str) -> list[tuple[bytes, bytes]] | None:
    """For `PageHeaders`: `Vary: User-Agent` on every answer of the paths above."""
    return VARY_HEADERS if VARY_PATHS.match(path) else None


def offset(request: Request) -> int:
    """The upstream SDK pages traces with `offset` (rows to skip); others' `offset` stays
    ignored, as it always was. Not a whole number in [0, 2**63) → 422."""
    raw = request.query_params.get("offset")
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_INT:
        message = "offset must be a whole number of rows to skip (0 or more)"
        raise validation_error(
            message, [{"loc": ["query", "offset"], "message": message, "type": "int_parsing"}]
        )
    return int(raw)


# --- the tables ---------------------------------------------------------------------------

OMIT = object()  # `missing`: leave the key out (an optional field of their types)


@dataclass(frozen=True)
class Field:
    """Their field `theirs` is our field `ours` (else `otherwise`), through `convert`;
    when both are null it is `missing` (OMIT: absent, as their optional fields may be)."""

    theirs: str
    ours: str
    convert: Callable[[Any], Any] | None = None
    otherwise: str | None = None
    missing: Any = OMIT


def pick(row: Mapping[str, Any], table: Sequence[Field]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in table:
        value = row.get(field.ours)
        if value is None and field.otherwise is not None:
            value = row.get(field.otherwise)
        if value is None:
            if field.missing is not OMIT:
                out[field.theirs] = field.missing
            continue
        out[field.theirs] = field.convert(value) if field.convert else value
    return out


def renamed(names: Mapping[str, str]) -> Callable[[Any], Any]:
    """A value conversion: these values spelled their way, any other one as it is."""
    return lambda value: names.get(value, value)


#: Their span statuses (what their createTrace sends and our aliases accept).
SPAN_STATUS = renamed({"success": "completed", "error": "failed"})
#: Their run statuses: pending | running | completed | failed | cancelled.
RUN_STATUS = renamed({"queued": "pending"})

#: `Trace` of their types.ts, from our `Trace`. `userId` is added from the caller.
SPAN = (
    Field("id", "id", str),
    Field("traceId", "trace_id", missing=None),  # null only on spans older than migration 0007
    Field("parentTraceId", "parent_span_id"),
    Field("spanId", "span_id", missing=None),
    Field("spanName", "span_name", otherwise="operation"),
    Field("startTime", "start_time", otherwise="created_at"),
    Field("endTime", "end_time"),
    Field("durationMs", "latency_ms"),
    Field("operationType", "operation"),
    Field("modelName", "model"),
    Field("modelProvider", "provider"),
    Field("inputTokens", "prompt_tokens"),
    Field("outputTokens", "completion_tokens"),
    Field("totalTokens", "total_tokens"),
    Field("status", "status", SPAN_STATUS),
    Field("errorMessage", "error"),
    Field("conversationId", "conversation_id"),
    Field("createdAt", "created_at"),
)

#: `AnalyticsDataResponse.data[]` from our `buckets[]`; their numbers are never null.
BUCKET = (
    Field("date", "bucket"),
    Field("requestCount", "request_count"),
    Field("tokenCount", "total_tokens"),
    Field("avgLatencyMs", "avg_latency_ms", missing=0),
    Field("errorRate", "error_rate", missing=0),
)

#: `AnalyticsDataResponse.summary` from our `totals`.
SUMMARY = (
    Field("totalRequests", "request_count"),
    Field("totalTokens", "total_tokens"),
    Field("avgLatencyMs", "avg_latency_ms", missing=0),
    Field("errorRate", "error_rate", missing=0),
)


#: `batchTest.run` reads `testId ?? test_id`, `status`, `success` and passes `results` on as
#: `{totalPrompts, successful, failed}`.
STARTED_COUNTS = (
    Field("totalPrompts", "total_prompts"),
    Field("successful", "successful"),
    Field("failed", "failed"),
)
STARTED = (
    Field("success", "success"),
    Field("testId", "test_run_id"),
    Field("status", "status", RUN_STATUS),
    Field("results", "results", lambda counts: pick(counts, STARTED_COUNTS)),
)

#: `batchTest.status` reads these snake_case fields (its own `testId` is the one it sent).
RUN = (
    Field("test_id", "test_run_id"),
    Field("status", "status", RUN_STATUS),
    Field("total_prompts", "total_prompts"),
    Field("completed_prompts", "completed_prompts"),
    Field("failed_prompts", "failed_prompts"),
    Field("started_at", "started_at"),
    Field("completed_at", "finished_at"),
    Field("error", "error"),
)

#: `batchTest.cancel` reads `success` and `message`.
CANCELLED = (
    Field("testId", "test_run_id"),
    Field("status", "status", RUN_STATUS),
)


# --- one adapter per endpoint -------------------------------------------------------------


def span(trace: Mapping[str, Any], *, user: str) -> dict[str, Any]:
    """`POST /api/analytics/traces` (their createTrace reads `id`) and each listed span."""
    return {**pick(trace, SPAN), "userId": user}


def traces_page(page: Mapping[str, Any], *, user: str) -> dict[str, Any]:
    """`GET /api/analytics/traces` → `TracesResponse`: `count` is the number of spans in this
    answer (as the upstream server counted its page), `hasMore` whether another page exists."""
    spans = [span(trace, user=user) for trace in page["traces"]]
    return {"traces": spans, "count": len(spans), "hasMore": page["next_cursor"] is not None}


def analytics_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """`GET /api/analytics/data` → `AnalyticsDataResponse`."""
    return {
        "data": [pick(bucket, BUCKET) for bucket in data["buckets"]],
        "summary": pick(data["totals"], SUMMARY),
    }


def batch_started(started: Mapping[str, Any]) -> dict[str, Any]:
    return pick(started, STARTED)


def batch_status(run: Mapping[str, Any]) -> dict[str, Any]:
    return pick(run, RUN)


def batch_cancelled(run: Mapping[str, Any]) -> dict[str, Any]:
    message = f"test run {run['test_run_id']} cancelled"
    return {"success": True, "message": message, **pick(run, CANCELLED)}


def predictions_page(page: Mapping[str, Any]) -> dict[str, Any]:
    """Same names as ours; only `id` is a string in their `TrainingPrediction`."""
    rows = [{**row, "id": str(row["id"])} for row in page["predictions"]]
    return {**page, "predictions": rows}


# --- training predictions as the upstream SDKs send them ----------------------------------

#: Per-row fields of their `trainingPredictions.create` that we do not take from a client:
#: the owner comes from the job token, scores and validation from our own scoring.
UPSTREAM_ROW_IGNORED = frozenset(
    {
        "user_id",
        "exact_match",
        "char_error_rate",
        "length_ratio",
        "word_overlap",
        "validation_pass",
        "validation_kind",
        "validation_errors",
    }
)


_ROW_DROPPED = UPSTREAM_ROW_IGNORED | {"job_id"}  # checked against the body's, then dropped


def ingest_body(raw: bytes) -> tuple[str, bytes]:
    """Their `{job_id, predictions: [{job_id, user_id, ...scores}]}` → the job id and our
    batch body, which our ingest then checks as strictly as ever (unknown fields 422)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise validation_error("the body is not valid JSON") from None
    if not isinstance(body, dict) or set(body) != {"job_id", "predictions"}:
        raise validation_error("the body must be {job_id, predictions}")
    job_id, rows = body["job_id"], body["predictions"]
    if not isinstance(job_id, str) or not isinstance(rows, list):
        raise validation_error("job_id must be a string and predictions a list")
    ours = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise validation_error(f"predictions[{index}] must be an object")
        if row.get("job_id", job_id) != job_id:
            raise validation_error(f"predictions[{index}].job_id is not the body's job_id")
        ours.append(
            {k: v for k, v in row.items() if k != "job_id" and k not in UPSTREAM_ROW_IGNORED}
        )
    return job_id, orjson.dumps({"predictions": ours})
