"""`client.predict(...)`: a chat completion from a registered model, whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import orjson

from finetune_lab.client._sse import SSEDecoder
from finetune_lab.client._transport import (
    AsyncTransport,
    RequestSpec,
    SyncTransport,
    map_transport_error,
    parse_model,
)
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


def chunk_from(data: str) -> ChatCompletionChunk | None:
    """A chunk, None at `[DONE]`; an error event becomes FinetuneLabError."""
    if data == "[DONE]":
        return None
    payload = orjson.loads(data)
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        raise FinetuneLabError(
            str(error.get("message")), 502, payload, error_type=error.get("type")
        )
    chunk: ChatCompletionChunk = ChatCompletionChunk.from_json_data(payload)
    return chunk


def iter_chunks(transport: SyncTransport, body: dict[str, Any]) -> Iterator[ChatCompletionChunk]:
    response = transport.open_stream(predict_spec(body))
    decoder = SSEDecoder()
    try:
        for line in response.iter_lines():
            event = decoder.feed(line)
            if event is None:
                continue
            chunk = chunk_from(event.data)
            if chunk is None:
                return
            yield chunk
    except httpx.TransportError as exc:
        raise map_transport_error(exc, response.request) from exc
    finally:
        response.close()


async def aiter_chunks(
    transport: AsyncTransport, body: dict[str, Any]
) -> AsyncIterator[ChatCompletionChunk]:
    response = await transport.open_stream(predict_spec(body))
    decoder = SSEDecoder()
    try:
        async for line in response.aiter_lines():
            event = decoder.feed(line)
            if event is None:
                continue
            chunk = chunk_from(event.data)
            if chunk is None:
                return
            yield chunk
    except httpx.TransportError as exc:
        raise map_transport_error(exc, response.request) from exc
    finally:
        await response.aclose()
