"""`POST /v1/traces`: OpenTelemetry traces in, as OTLP/HTTP specifies (protobuf or JSON,
gzip or not), so any app instrumented with OpenTelemetry sends its spans without our SDK.

The body is read raw (after the credential gate and within the body cap, like every /v1
route), decoded and mapped in a worker thread, and written in one transaction: a request is
stored whole or not at all; spans we cannot store are counted in `partial_success`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from finetune_lab.server.deps import AppSettings, Db, Production
from finetune_lab.server.services import otlp, traces

router = APIRouter(tags=["analytics"])

OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An OTLP ExportTraceServiceRequest (opentelemetry-proto), protobuf or "
        "OTLP/JSON; `Content-Encoding: gzip` optional.",
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "ExportTraceServiceResponse in the request's encoding; "
        "`partialSuccess.rejectedSpans` counts spans that could not be stored.",
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}},
        },
    },
    400: {"description": "The body is not an ExportTraceServiceRequest (nothing stored)"},
    415: {"description": "Content-Type or Content-Encoding OTLP/HTTP does not define"},
}


@router.post("/v1/traces", openapi_extra=OPENAPI_EXTRA, responses=RESPONSES)
async def export_traces(
    request: Request, principal: Production, db: Db, settings: AppSettings
) -> Response:
    """Store the spans of an OTLP trace export (GenAI attributes mapped onto trace fields)."""
    kind = otlp.media_type(request.headers.get("content-type"))
    body = await request.body()  # BodySizeLimit has already capped it
    encoding = request.headers.get("content-encoding")

    def store() -> bytes:
        message = otlp.parse(otlp.decompress(body, encoding, settings.max_body_bytes), kind)
        decoded = otlp.decode(message)
        with db.write() as conn:
            traces.insert_spans(conn, principal.user_id, decoded.rows)
        return otlp.response(decoded, kind)

    return Response(await run_in_threadpool(store), media_type=kind)
