"""Models behind an OpenAI-compatible `/chat/completions` (OpenAI, vLLM, Ollama, this server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from finetune_lab.server.services.backends.base import (
    BackendError,
    Completion,
    GenerationParams,
    StreamEvent,
)

UPSTREAM_TIMEOUT = httpx.Timeout(300.0, connect=10.0)


def _body(model: Any, params: GenerationParams, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model.upstream_model or model.name,
        "messages": params.messages,
        "stream": stream,
    }
    for name in ("temperature", "top_p", "max_tokens", "seed"):
        value = getattr(params, name)
        if value is not None:
            body[name] = value
    if params.stop:
        body["stop"] = params.stop
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _upstream_message(response: httpx.Response) -> str:
    try:
        data = orjson.loads(response.content)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
    except orjson.JSONDecodeError:
        pass
    return response.text[:500] or response.reason_phrase


def _transport_error(exc: httpx.TransportError, url: str) -> BackendError:
    if isinstance(exc, httpx.TimeoutException):
        return BackendError(504, "upstream_timeout", f"the model endpoint {url} timed out")
    message = f"cannot reach the model endpoint {url}: {exc}"
    return BackendError(502, "upstream_unreachable", message)


def _status_error(response: httpx.Response, url: str) -> BackendError:
    return BackendError(
        502,
        "upstream_error",
        f"the model endpoint answered {response.status_code}: {_upstream_message(response)}",
        {"upstream_status": response.status_code, "url": url},
    )


def _usage(data: Any) -> tuple[int | None, int | None]:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (
        prompt if isinstance(prompt, int) else None,
        completion if isinstance(completion, int) else None,
    )


class OpenAICompatibleBackend:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    def _request(self, model: Any, body: dict[str, Any]) -> httpx.Request:
        url = f"{model.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if model.api_key:
            headers["Authorization"] = f"Bearer {model.api_key}"
        return self.client.build_request(
            "POST", url, content=orjson.dumps(body), headers=headers, timeout=UPSTREAM_TIMEOUT
        )

    async def complete(self, model: Any, params: GenerationParams) -> Completion:
        request = self._request(model, _body(model, params, stream=False))
        try:
            response = await self.client.send(request)
        except httpx.TransportError as exc:
            raise _transport_error(exc, str(request.url)) from exc
        if not response.is_success:
            raise _status_error(response, str(request.url))
        try:
            data = orjson.loads(response.content)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(
                502, "upstream_error", f"the model endpoint sent no chat completion: {exc!r}"
            ) from exc
        prompt_tokens, completion_tokens = _usage(data)
        return Completion(str(text), str(finish), prompt_tokens, completion_tokens)

    async def stream(self, model: Any, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        request = self._request(model, _body(model, params, stream=True))
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _transport_error(exc, str(request.url)) from exc
        try:
            if not response.is_success:
                await response.aread()
                raise _status_error(response, str(request.url))
            parts: list[str] = []
            finish = "stop"
            usage: tuple[int | None, int | None] = (None, None)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(chunk, dict) and "error" in chunk:
                    message = str(chunk["error"])[:500]
                    raise BackendError(502, "upstream_error", f"the model endpoint: {message}")
                if _usage(chunk) != (None, None):
                    usage = _usage(chunk)
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        parts.append(delta)
                        yield str(delta)
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
            yield Completion("".join(parts), finish, *usage)
        except httpx.TransportError as exc:
            raise _transport_error(exc, str(request.url)) from exc
        finally:
            await response.aclose()
