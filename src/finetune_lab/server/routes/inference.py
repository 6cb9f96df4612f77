"""`POST /api/v1/predict`, the same at `/v1/chat/completions`, and `GET /v1/models`
(OpenAI-compatible).

The body is read raw and validated here rather than by FastAPI, so that a malformed call is
still traced like every other predict call.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from finetune_lab.schema_serving import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    OpenAIModelList,
)
from finetune_lab.server.auth import Principal
from finetune_lab.server.deps import Db, InferenceDep, Production
from finetune_lab.server.errors import APIError, describe_validation_errors
from finetune_lab.server.responses import JSONBytesResponse
from finetune_lab.server.services import model_registry
from finetune_lab.server.services.inference import CallRecord, Inference
from finetune_lab.server.services.outbound import Slot
from finetune_lab.server.services.trace_context import SpanContext

router = APIRouter(tags=["inference"])

OPENAPI_EXTRA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}
        },
    }
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A chat completion, or with `stream: true` Server-Sent Events: "
        "`data: <ChatCompletionChunk>` events, then `data: [DONE]`.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
            "text/event-stream": {"schema": {"$ref": "#/components/schemas/ChatCompletionChunk"}},
        },
    },
    502: {"description": "The model endpoint failed"},
    503: {"description": "The model cannot be loaded or run here, or no outbound slot is free"},
    504: {"description": "The model endpoint timed out"},
}
# Models FastAPI cannot see through the raw-body route; app.py adds them to the schema.
SCHEMA_MODELS = (ChatCompletionRequest, ChatCompletion, ChatCompletionChunk)


class SlotStreamingResponse(StreamingResponse):
    """Releases the stream's outbound slot however the response ends (a client that leaves
    before the first chunk never starts the generator, whose own release would never run)."""

    def __init__(self, content: Any, slot: Slot, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


def _parse(raw: bytes) -> tuple[ChatCompletionRequest | None, APIError | None, Any]:
    """(body, None, model name) or (None, the 400/422 error, model name if one was sent)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, APIError(400, "request body is not valid JSON"), None
    name = data.get("model") if isinstance(data, dict) else None
    name = name[:512] if isinstance(name, str) else None
    try:
        body = ChatCompletionRequest.model_validate(data)
        body.stop_list  # noqa: B018 - validates the stop count
    except ValidationError as exc:
        message, details = describe_validation_errors([dict(e) for e in exc.errors()])
        return None, APIError(422, message, details=details), name
    except ValueError as exc:
        return None, APIError(422, str(exc)), name
    return body, None, name


async def _chat(request: Request, principal: Principal, inference: Inference) -> Any:
    # The call's span: a child of the caller's (W3C traceparent), else a new trace. The answer
    # names it in `traceresponse` (W3C Trace Context level 2) so the caller can look it up.
    context = SpanContext.from_traceparent(request.headers.get("traceparent"))
    span_header = {"traceresponse": context.traceparent()}
    try:
        return await _answer(request, inference, principal, context, span_header)
    except APIError as error:
        error.headers = {**(error.headers or {}), **span_header}
        raise


async def _answer(
    request: Request,
    inference: Inference,
    principal: Principal,
    context: SpanContext,
    span_header: dict[str, str],
) -> Any:
    body, error, name = _parse(await request.body())
    if error is not None or body is None:
        assert error is not None
        await inference.record(CallRecord(principal.user_id, name, context=context), error=error)
        raise error
    if body.stream:
        stream = await inference.open_stream(principal, body, context)
        return SlotStreamingResponse(
            stream.chunks,
            stream.slot,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **span_header},
        )
    return JSONBytesResponse(await inference.chat(principal, body, context), headers=span_header)


@router.post("/api/v1/predict", openapi_extra=OPENAPI_EXTRA, responses=RESPONSES)
async def predict(request: Request, principal: Production, inference: InferenceDep) -> Any:
    """Chat completion from a registered model (OpenAI request and response shapes)."""
    return await _chat(request, principal, inference)


@router.post("/v1/chat/completions", openapi_extra=OPENAPI_EXTRA, responses=RESPONSES)
async def chat_completions(request: Request, principal: Production, inference: InferenceDep) -> Any:
    """The same as `/api/v1/predict`, where OpenAI clients look for it (base URL `.../v1`)."""
    return await _chat(request, principal, inference)


@router.get("/v1/models", response_model=OpenAIModelList)
def openai_models(principal: Production, db: Db) -> JSONBytesResponse:
    """The caller's registered models in OpenAI's list shape (`openai.models.list()`)."""
    return JSONBytesResponse(model_registry.openai_model_list(db, principal))
