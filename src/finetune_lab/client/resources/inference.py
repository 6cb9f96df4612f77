"""`client.predict(...)`: a chat completion from a registered model, whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import orjson

from finetune_lab.client._streaming import DONE, Done, EventFlow, aiter_events, iter_events
from finetune_lab.client._transport import AsyncTransport, RequestSpec, SyncTransport, parse_model
from finetune_lab.errors import FinetuneLabError
from finetune_lab.schema_serving import ChatCompletion, ChatCompletionChunk

PATH = "/api/v1/predict"
Message = dict[str, Any]


def chat_body(
    model: str,
    messages: str | Sequence[Message],
    temperature: float | None,
    max_tokens: int | None,
    stream: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """A plain string is one user message."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    body: dict[str, Any] = {"model": model, "messages": list(messages), "stream": stream}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    return body


def predict_spec(body: dict[str, Any]) -> RequestSpec[ChatCompletion]:
    # Not idempotent: a retried generation is another generation (and another trace).
    return RequestSpec("POST", PATH, parse_model(ChatCompletion), json=body)


def chunk_from(data: str) -> ChatCompletionChunk | Done:
    """A chunk, DONE at `[DONE]`; an error event becomes FinetuneLabError."""
    if data == "[DONE]":
        return DONE
    payload = orjson.loads(data)
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        raise FinetuneLabError(
            str(error.get("message")), 502, payload, error_type=error.get("type")
        )
    chunk: ChatCompletionChunk = ChatCompletionChunk.from_json_data(payload)
    return chunk


def _chunk_flow(body: dict[str, Any]) -> EventFlow[ChatCompletionChunk]:
    """Not resumable: a generation cannot be picked up where a lost connection left it."""
    spec = predict_spec(body)
    return EventFlow(lambda _last: spec, lambda event: chunk_from(event.data))


def iter_chunks(transport: SyncTransport, body: dict[str, Any]) -> Iterator[ChatCompletionChunk]:
    return iter_events(transport, _chunk_flow(body))


def aiter_chunks(
    transport: AsyncTransport, body: dict[str, Any]
) -> AsyncIterator[ChatCompletionChunk]:
    return aiter_events(transport, _chunk_flow(body))
