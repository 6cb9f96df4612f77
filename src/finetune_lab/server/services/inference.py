"""Chat completions against registered models, each call (success or failure) traced.

One `Inference` per server process owns the backends (an HTTP client for OpenAI-compatible
endpoints, the cache of local checkpoints) and the outbound gate; predict routes and the batch
worker share them, so a batch prompt counts against its user's limit like a predict call.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
import httpx
import orjson
from starlette.concurrency import run_in_threadpool

from finetune_lab.schema_serving import ChatCompletionRequest
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.errors import APIError
from finetune_lab.server.redact import mask_httpx_logs
from finetune_lab.server.services import model_registry, traces
from finetune_lab.server.services.backends import (
    Backend,
    BackendError,
    Completion,
    GenerationParams,
)
from finetune_lab.server.services.backends.local_hf import LocalModels
from finetune_lab.server.services.backends.openai_compat import OpenAICompatibleBackend
from finetune_lab.server.services.outbound import OutboundGate, OutboundLimits, Slot, target_of
from finetune_lab.server.services.tokens import utcnow
from finetune_lab.server.services.trace_context import SpanContext

OPERATION = "chat.completions"
MAX_TRACE_OUTPUT_CHARS = 100_000


def params_from(body: ChatCompletionRequest) -> GenerationParams:
    return GenerationParams(
        messages=[{"role": m.role, "content": m.text} for m in body.messages],
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=body.token_limit,
        stop=body.stop_list,
        seed=body.seed,
    )


def usage_of(completion: Completion) -> dict[str, int] | None:
    if completion.prompt_tokens is None or completion.completion_tokens is None:
        return None
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def as_api_error(exc: BackendError) -> APIError:
    return APIError(
        exc.status_code, exc.message, type=exc.error_type, details=exc.details, headers=exc.headers
    )


@dataclass
class CallRecord:
    """What one call's trace will say; filled in as the call goes."""

    user_id: int
    model: str | None
    operation: str = OPERATION
    model_id: str | None = None
    streamed: bool = False
    test_run_id: str | None = None
    input: Any = None
    provider: str | None = None
    job_id: str | None = None  # the model's training run, when it names one
    step: int | None = None
    context: SpanContext = field(default_factory=SpanContext.new)
    started: float = field(default_factory=time.perf_counter)
    started_at: datetime = field(default_factory=utcnow)

    def values(
        self,
        *,
        completion: Completion | None = None,
        error: APIError | None = None,
        status_code: int = 200,
    ) -> dict[str, Any]:
        latency_ms = (time.perf_counter() - self.started) * 1000.0
        values: dict[str, Any] = {
            "model": self.model,
            "model_id": self.model_id,
            "provider": self.provider,
            "job_id": self.job_id,
            "step": self.step,
            "operation": self.operation,
            "streamed": self.streamed,
            "test_run_id": self.test_run_id,
            "input": self.input,
            "latency_ms": latency_ms,
            # A span, named as OpenTelemetry's GenAI conventions name one ("chat {model}").
            "trace_id": self.context.trace_id,
            "span_id": self.context.span_id,
            "parent_span_id": self.context.parent_span_id,
            "span_name": f"chat {self.model}" if self.model else "chat",
            "start_time": self.started_at,
            "end_time": self.started_at + timedelta(milliseconds=latency_ms),
            "created_at": self.started_at,
        }
        if error is not None:
            values.update(
                status="error",
                status_code=error.status_code,
                error_type=error.type,
                error=error.message,
            )
        else:
            values.update(status="success", status_code=status_code)
        if completion is not None:
            values.update(
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                total_tokens=completion.total_tokens,
                finish_reason=completion.finish_reason,
                output=completion.text[:MAX_TRACE_OUTPUT_CHARS],
            )
        return values


@dataclass
class OpenStream:
    """A stream about to start: its chunks, and its outbound slot (released when it ends)."""

    chunks: AsyncIterator[bytes]
    slot: Slot


class Inference:
    def __init__(
        self,
        db: Database,
        *,
        model_cache_size: int = 2,
        limits: OutboundLimits | None = None,
        pool_timeout_s: float = 5.0,
    ) -> None:
        self.db = db
        self.gate = OutboundGate(limits or OutboundLimits())
        # As many connections as the gate lets calls through: the pool is never what waits.
        total = self.gate.limits.total
        self.http = httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=total, max_keepalive_connections=min(total, 64)),
        )
        self.openai = OpenAICompatibleBackend(self.http, pool_timeout_s)
        self.local = LocalModels(model_cache_size)
        mask_httpx_logs()

    async def aclose(self) -> None:
        await self.http.aclose()

    def backend(self, model: Any) -> Backend:
        return self.local if model.kind == "local" else self.openai

    async def record(self, record: CallRecord, **outcome: Any) -> None:
        values = record.values(**outcome)
        await run_in_threadpool(traces.record_trace, self.db, record.user_id, **values)

    async def resolve(self, principal: Principal, record: CallRecord) -> Any:
        """The caller's model named in the body; 404 (traced) when there is none."""

        def find() -> Any:
            with self.db.read() as conn:
                return model_registry.find_model(conn, principal, record.model or "")

        model = await run_in_threadpool(find)
        if model is None:
            error = APIError(404, f"no model named {record.model!r}: register it at /api/models")
            await self.record(record, error=error)
            raise error
        record.model_id = model.id
        record.provider = model.kind
        record.job_id, record.step = model.job_id, model.step
        return model

    async def admit(self, user_id: int, model: Any, *, queue: bool = False) -> Slot:
        """A slot for one call of `user_id` to `model`: 429/503 after a short wait, or with
        `queue` (batch prompts) as long as it takes."""
        wait_s = None if queue else self.gate.limits.wait_s
        return await self.gate.acquire(user_id, target_of(model), wait_s=wait_s)

    async def complete(
        self, user_id: int, model: Any, params: GenerationParams, *, queue: bool = False
    ) -> Completion:
        """One completion within `user_id`'s share, failures as APIError (no trace: the caller
        records it)."""
        slot = await self.admit(user_id, model, queue=queue)
        try:
            return await self.backend(model).complete(model, params)
        except BackendError as exc:
            raise as_api_error(exc) from exc
        finally:
            slot.release()

    async def chat(
        self, principal: Principal, body: ChatCompletionRequest, context: SpanContext | None = None
    ) -> dict[str, Any]:
        record = CallRecord(principal.user_id, body.model, input=_input_of(body))
        record.context = context or record.context
        model = await self.resolve(principal, record)
        try:
            completion = await self.complete(principal.user_id, model, params_from(body))
        except APIError as error:
            await self.record(record, error=error)
            raise
        await self.record(record, completion=completion)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": usage_of(completion),
        }

    async def open_stream(
        self, principal: Principal, body: ChatCompletionRequest, context: SpanContext | None = None
    ) -> OpenStream:
        """Resolve the model and take its slot now (so 404/429 are plain JSON answers), then
        stream SSE chunks. Whoever sends them releases `slot` at the end, even if the stream
        never started (the chunks release it too when they end)."""
        record = CallRecord(principal.user_id, body.model, streamed=True, input=_input_of(body))
        record.context = context or record.context
        model = await self.resolve(principal, record)
        try:
            slot = await self.admit(principal.user_id, model)
        except APIError as error:
            await self.record(record, error=error)
            raise
        return OpenStream(self._stream(model, body, record, slot), slot)

    async def _stream(
        self, model: Any, body: ChatCompletionRequest, record: CallRecord, slot: Slot
    ) -> AsyncIterator[bytes]:
        try:
            async with contextlib.aclosing(self._chunks(model, body, record)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            slot.release()

    async def _chunks(
        self, model: Any, body: ChatCompletionRequest, record: CallRecord
    ) -> AsyncGenerator[bytes, None]:
        chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            chunk = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        completion: Completion | None = None
        error: APIError | None = None
        try:
            yield event({"role": "assistant", "content": ""})
            async for item in self.backend(model).stream(model, params_from(body)):
                if isinstance(item, Completion):
                    completion = item
                else:
                    yield event({"content": item})
            if completion is None:
                raise BackendError(502, "upstream_error", "the model stream ended without an end")
            final = event({}, completion.finish_reason, usage=usage_of(completion))
        except BackendError as exc:
            error = as_api_error(exc)
            final = (
                b"data: "
                + orjson.dumps({"error": {"type": error.type, "message": error.message}})
                + b"\n\n"
            )
        except BaseException:  # the client went away (or the server is stopping)
            closed = APIError(499, "the client closed the stream", type="client_closed")
            with anyio.CancelScope(shield=True):
                await self.record(record, completion=completion, error=closed)
            raise
        # Traced before [DONE]: whoever saw the end of the stream can already see its trace.
        with anyio.CancelScope(shield=True):
            await self.record(record, completion=completion, error=error)
        yield final
        yield b"data: [DONE]\n\n"


def _input_of(body: ChatCompletionRequest) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.text} for m in body.messages]
