"""Models behind an OpenAI-compatible `/chat/completions` (OpenAI, vLLM, Ollama, this server).

What an upstream says in an error is third-party text: errors carry a short redacted excerpt,
and URLs in them are masked (`user:pass@`, secret query values), never the stored value."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import orjson

from finetune_lab.server.redact import excerpt, mask_url, url_secrets
from finetune_lab.server.services.backends.base import (
    BackendError,
    Completion,
    GenerationParams,
    StreamEvent,
)
from finetune_lab.server.services.outbound import RETRY_AFTER_S

UPSTREAM_READ_TIMEOUT_S = 300.0
UPSTREAM_CONNECT_TIMEOUT_S = 10.0


def upstream_timeout(pool_timeout_s: float) -> httpx.Timeout:
    """Waiting for a pool connection is short and separate from the long read timeout."""
    return httpx.Timeout(
        UPSTREAM_READ_TIMEOUT_S, connect=UPSTREAM_CONNECT_TIMEOUT_S, pool=pool_timeout_s
    )


def secrets_of(model: Any) -> list[str]:
    """What must never be echoed for this model: its key, the credentials in its URL, and
    the Basic auth token made of the URL's userinfo."""
    found = [model.api_key or "", *url_secrets(model.base_url), _call_target(model)[1] or ""]
    return [s for s in found if s]


def _call_target(model: Any) -> tuple[str, str | None]:
    """(the chat completions URL without userinfo, the Basic token its userinfo makes).

    `/chat/completions` goes after the base path and before any query (`?api-version=`), and
    userinfo travels only as a header, so no URL httpx handles or logs carries a password."""
    base = model.base_url or ""
    try:
        parts = urlsplit(base)
    except ValueError:
        return f"{base}/chat/completions", None
    basic = None
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        basic = base64.b64encode(pair.encode()).decode()
    host = parts.netloc.rsplit("@", 1)[-1]
    path = parts.path.rstrip("/") + "/chat/completions"
    return urlunsplit((parts.scheme, host, path, parts.query, "")), basic


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


def _upstream_text(response: httpx.Response) -> str:
    """The upstream's own error message when it sent one in OpenAI's shape, else its body."""
    try:
        data = orjson.loads(response.content)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except orjson.JSONDecodeError:
        pass
    return response.text or response.reason_phrase


def _transport_error(exc: httpx.TransportError, model: Any) -> BackendError:
    url = _shown_url(model)
    if isinstance(exc, httpx.PoolTimeout):
        return BackendError(
            503,
            "outbound_busy",
            "no connection to the model endpoint was free; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, httpx.TimeoutException):
        return BackendError(504, "upstream_timeout", f"the model endpoint {url} timed out")
    reason = excerpt(str(exc), secrets_of(model))
    return BackendError(
        502, "upstream_unreachable", f"cannot reach the model endpoint {url}: {reason}"
    )


def _status_error(response: httpx.Response, model: Any) -> BackendError:
    said = excerpt(_upstream_text(response), secrets_of(model))
    return BackendError(
        502,
        "upstream_error",
        f"the model endpoint answered {response.status_code}: {said}",
        {"upstream_status": response.status_code, "url": _shown_url(model)},
    )


def _shown_url(model: Any) -> str:
    return mask_url(_call_target(model)[0]) or ""


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
    def __init__(self, client: httpx.AsyncClient, pool_timeout_s: float = 5.0) -> None:
        self.client = client
        self.timeout = upstream_timeout(pool_timeout_s)

    def _request(self, model: Any, body: dict[str, Any]) -> httpx.Request:
        url, basic = _call_target(model)
        headers = {"Content-Type": "application/json"}
        if model.api_key:
            headers["Authorization"] = f"Bearer {model.api_key}"
        elif basic:
            headers["Authorization"] = f"Basic {basic}"
        try:
            return self.client.build_request(
                "POST", url, content=orjson.dumps(body), headers=headers, timeout=self.timeout
            )
        except httpx.InvalidURL as exc:
            raise BackendError(
                502,
                "upstream_unreachable",
                f"the model's base_url is not a usable URL: {mask_url(model.base_url)}",
            ) from exc

    async def complete(self, model: Any, params: GenerationParams) -> Completion:
        request = self._request(model, _body(model, params, stream=False))
        try:
            response = await self.client.send(request)
        except httpx.TransportError as exc:
            raise _transport_error(exc, model) from exc
        if not response.is_success:
            raise _status_error(response, model)
        try:
            data = orjson.loads(response.content)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(
                502,
                "upstream_error",
                "the model endpoint sent no chat completion: "
                f"{excerpt(repr(exc), secrets_of(model))}",
            ) from exc
        prompt_tokens, completion_tokens = _usage(data)
        return Completion(str(text), str(finish), prompt_tokens, completion_tokens)

    async def stream(self, model: Any, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        request = self._request(model, _body(model, params, stream=True))
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _transport_error(exc, model) from exc
        try:
            if not response.is_success:
                await response.aread()
                raise _status_error(response, model)
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
                    message = excerpt(str(chunk["error"]), secrets_of(model))
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
            raise _transport_error(exc, model) from exc
        finally:
            await response.aclose()
