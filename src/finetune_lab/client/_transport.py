"""HTTP plumbing shared by every resource: request specs, auth, retries, error mapping.

Resources describe a call once as a `RequestSpec` (method, path, params, body, how to parse the
answer, whether a retry is safe). `SyncTransport` and `AsyncTransport` are the only places that
do I/O, so the sync and async clients cannot drift apart in behaviour.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar, cast
from urllib.parse import quote

import anyio
import httpx
import orjson

from finetune_lab._version import __version__
from finetune_lab.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    FinetuneLabError,
    RateLimitError,
    error_class_for_status,
)
from finetune_lab.schema import WireModel

T = TypeVar("T")
M = TypeVar("M", bound=WireModel)

DEFAULT_BASE_URL = "http://127.0.0.1:8484"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
API_KEY_ENV = "FINETUNE_LAB_API_KEY"
BASE_URL_ENV = "FINETUNE_LAB_API_URL"
USER_AGENT = f"finetune-lab-python/{__version__}"

RETRY_BASE_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
RETRY_AFTER_CAP = 60.0
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
# Failures that happen before a single byte of the request reached the server: a retry cannot
# apply a write twice, so even non-idempotent calls may repeat.
_NEVER_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures that may have happened after the server got the request: retry idempotent calls only.
_MAYBE_SENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

ResponseParser = Callable[[httpx.Response], T]


def _sleep(seconds: float) -> None:
    """Blocking pause between retries (a module function so tests can replace it)."""
    time.sleep(seconds)


async def _async_sleep(seconds: float) -> None:
    """Async pause between retries; anyio so it works under asyncio and trio alike."""
    await anyio.sleep(seconds)


# --- request description ------------------------------------------------------------------


@dataclass(frozen=True)
class RequestSpec(Generic[T]):
    """Everything needed to make one API call, independent of sync or async execution."""

    method: str
    path: str
    parse: ResponseParser[T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | None = None  # an already-encoded JSON body (used for large ingests)
    idempotent: bool | None = None  # None: decided by the HTTP method

    @property
    def retry_safe(self) -> bool:
        if self.idempotent is not None:
            return self.idempotent
        return self.method.upper() in _IDEMPOTENT_METHODS


def path_segment(value: str | int) -> str:
    """Encode one path segment: job ids may hold ':' or '.', and must never add a '/'."""
    return quote(str(value), safe="")


def query_params(params: Mapping[str, Any]) -> dict[str, str | int | float]:
    """Drop unset (None) parameters and spell booleans the way the server parses them."""
    out: dict[str, str | int | float] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = value
    return out


def decode_json(response: httpx.Response) -> Any:
    """Parse a success body; a non-JSON answer means a proxy or a wrong URL, so say that."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise FinetuneLabError(
            f"Expected JSON from {response.request.method} {response.request.url}, got "
            f"{response.headers.get('content-type', 'no content type')}: {exc}",
            response.status_code,
            response.text[:2000],
            error_type="invalid_response",
        ) from exc


def parse_model(model: type[M]) -> ResponseParser[M]:
    """A parser turning the JSON answer into `model`, keeping the raw JSON on `.raw`."""

    def parse(response: httpx.Response) -> M:
        data = decode_json(response)
        try:
            return cast(M, model.from_json_data(data))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise FinetuneLabError(
                f"Unexpected {model.__name__} shape from {response.request.method} "
                f"{response.request.url.path}: {exc}",
                response.status_code,
                data,
                error_type="invalid_response",
            ) from exc

    return parse


def parse_bytes(response: httpx.Response) -> bytes:
    return response.content


# --- errors and retry policy --------------------------------------------------------------


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asked us to wait (`Retry-After` seconds or HTTP date), if any."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def make_status_error(response: httpx.Response) -> APIStatusError:
    """Map a non-2xx answer to its error class, keeping the server's message and error type."""
    try:
        content = response.content
    except httpx.ResponseNotRead:  # the body broke off mid-read: map by status alone
        content = b""
    text = content.decode("utf-8", errors="replace")
    try:
        body: Any = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = text
    message: str | None = None
    error_type: str | None = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        if isinstance(error.get("message"), str):
            message = error["message"]
        if isinstance(error.get("type"), str):
            error_type = error["type"]
    if not message:
        text = text.strip()
        message = text[:500] if text else (response.reason_phrase or f"HTTP {response.status_code}")
    cls = error_class_for_status(response.status_code)
    if issubclass(cls, RateLimitError):
        return cls(
            message,
            response.status_code,
            body,
            error_type=error_type,
            retry_after=parse_retry_after(response.headers),
        )
    return cls(message, response.status_code, body, error_type=error_type)


def map_transport_error(exc: httpx.TransportError, request: httpx.Request) -> FinetuneLabError:
    where = f"{request.method} {request.url}"
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"Request timed out: {where} ({type(exc).__name__})")
    return APIConnectionError(f"Could not reach the server: {where} ({exc or type(exc).__name__})")


def backoff_delay(attempt: int) -> float:
    """Exponential backoff (0.5 s, 1 s, 2 s, ... capped at 8 s) minus up to 25 % jitter."""
    delay = min(RETRY_BASE_DELAY * (2.0**attempt), RETRY_MAX_DELAY)
    return delay * (1.0 - 0.25 * random.random())


def retry_delay_for_response(
    spec: RequestSpec[Any], response: httpx.Response, attempt: int, max_retries: int
) -> float | None:
    """How long to wait before retrying this answer, or None to give up and raise."""
    if attempt >= max_retries:
        return None
    status = response.status_code
    if status == 429:
        pass  # the server refused before doing anything: safe for every call
    elif status >= 500 and spec.retry_safe:
        pass
    else:
        return None
    retry_after = parse_retry_after(response.headers)
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP)
    return backoff_delay(attempt)


def retry_delay_for_exception(
    spec: RequestSpec[Any], exc: httpx.TransportError, attempt: int, max_retries: int
) -> float | None:
    if attempt >= max_retries:
        return None
    if isinstance(exc, _NEVER_SENT_ERRORS) or (
        isinstance(exc, _MAYBE_SENT_ERRORS) and spec.retry_safe
    ):
        return backoff_delay(attempt)
    return None


# --- configuration ------------------------------------------------------------------------


def resolve_base_url(base_url: str | None = None) -> str:
    """The server a client talks to: the argument, else FINETUNE_LAB_API_URL, else local."""
    return (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")


@dataclass(frozen=True)
class ClientConfig:
    """Resolved connection settings (arguments first, then environment, then defaults)."""

    api_key: str
    base_url: str
    timeout: float | httpx.Timeout
    max_retries: int

    @classmethod
    def resolve(
        cls,
        api_key: str | None,
        base_url: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
    ) -> ClientConfig:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key:
            raise FinetuneLabError(
                f"No API key: pass api_key=... or set {API_KEY_ENV} "
                "(create one with `finetune-lab keys create`)."
            )
        url = resolve_base_url(base_url)
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        return cls(api_key=key, base_url=url, timeout=timeout, max_retries=max_retries)

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }


class _BaseTransport:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config

    def _request_kwargs(self, spec: RequestSpec[Any]) -> dict[str, Any]:
        headers = self.config.headers
        content = spec.content
        if content is None and spec.json is not None:
            content = orjson.dumps(spec.json)
        if content is not None:
            headers["Content-Type"] = "application/json"
        return {
            "method": spec.method,
            "url": f"{self.config.base_url}{spec.path}",
            "params": query_params(spec.params) if spec.params else None,
            "content": content,
            "headers": headers,
            "timeout": self.config.timeout,
        }


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


class SyncTransport(_BaseTransport):
    """Executes specs over an `httpx.Client` (ours, or one the caller owns and closes)."""

    def __init__(self, config: ClientConfig, http_client: httpx.Client | None = None) -> None:
        super().__init__(config)
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else httpx.Client()

    def sleep(self, seconds: float) -> None:
        """The pause between attempts (retries here, reconnects of a stream)."""
        _sleep(seconds)

    def execute(self, spec: RequestSpec[T]) -> T:
        response = self._send(spec, stream=False)
        return spec.parse(response)

    def open_stream(self, spec: RequestSpec[Any]) -> httpx.Response:
        """A successful answer whose body is still unread (SSE); the caller closes it."""
        return self._send(spec, stream=True)

    def download(self, spec: RequestSpec[Any], path: Path) -> Path:
        """Stream the answer into `path` via a `.part` file, so a failure leaves no half file."""
        response = self._send(spec, stream=True)
        part = _part_path(path)
        try:
            with part.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            part.replace(path)
        except httpx.TransportError as exc:
            part.unlink(missing_ok=True)
            raise map_transport_error(exc, response.request) from exc
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            response.close()
        return path

    def _send(self, spec: RequestSpec[Any], *, stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            request = self._client.build_request(**self._request_kwargs(spec))
            try:
                response = self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = retry_delay_for_exception(spec, exc, attempt, self.config.max_retries)
                if delay is None:
                    raise map_transport_error(exc, request) from exc
            else:
                if response.is_success:
                    return response
                try:
                    response.read()
                except httpx.TransportError:
                    pass
                finally:
                    response.close()
                delay = retry_delay_for_response(spec, response, attempt, self.config.max_retries)
                if delay is None:
                    raise make_status_error(response)
            self.sleep(delay)
            attempt += 1

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


class AsyncTransport(_BaseTransport):
    """The async twin of `SyncTransport`, over an `httpx.AsyncClient`."""

    def __init__(self, config: ClientConfig, http_client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config)
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else httpx.AsyncClient()

    async def sleep(self, seconds: float) -> None:
        """The pause between attempts (retries here, reconnects of a stream)."""
        await _async_sleep(seconds)

    async def execute(self, spec: RequestSpec[T]) -> T:
        response = await self._send(spec, stream=False)
        return spec.parse(response)

    async def open_stream(self, spec: RequestSpec[Any]) -> httpx.Response:
        """A successful answer whose body is still unread (SSE); the caller closes it."""
        return await self._send(spec, stream=True)

    async def download(self, spec: RequestSpec[Any], path: Path) -> Path:
        """Stream into `path` via a `.part` file (small blocking writes, like httpx examples)."""
        response = await self._send(spec, stream=True)
        part = _part_path(path)
        try:
            with part.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
            part.replace(path)
        except httpx.TransportError as exc:
            part.unlink(missing_ok=True)
            raise map_transport_error(exc, response.request) from exc
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            await response.aclose()
        return path

    async def _send(self, spec: RequestSpec[Any], *, stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            request = self._client.build_request(**self._request_kwargs(spec))
            try:
                response = await self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = retry_delay_for_exception(spec, exc, attempt, self.config.max_retries)
                if delay is None:
                    raise map_transport_error(exc, request) from exc
            else:
                if response.is_success:
                    return response
                try:
                    await response.aread()
                except httpx.TransportError:
                    pass
                finally:
                    await response.aclose()
                delay = retry_delay_for_response(spec, response, attempt, self.config.max_retries)
                if delay is None:
                    raise make_status_error(response)
            await self.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
