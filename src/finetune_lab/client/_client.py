"""The two entry points: `FinetuneLabClient` (blocking) and `AsyncFinetuneLabClient`.

A client owns one transport (one connection pool) and hangs one sub-client per API resource
off it; adding a resource means one module in `resources/` and one attribute here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, overload

import httpx

from finetune_lab.client._transport import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    AsyncTransport,
    ClientConfig,
    RequestSpec,
    SyncTransport,
    parse_model,
)
from finetune_lab.client.resources import (
    Analytics,
    AsyncAnalytics,
    AsyncBatchTest,
    AsyncJobs,
    AsyncModels,
    AsyncTestSuites,
    AsyncTrainingPredictions,
    BatchTest,
    Jobs,
    Models,
    TestSuites,
    TrainingPredictions,
)
from finetune_lab.client.resources.inference import (
    Message,
    aiter_chunks,
    chat_body,
    iter_chunks,
    predict_spec,
)
from finetune_lab.schema import SessionResponse, WhoAmI
from finetune_lab.schema_serving import ChatCompletion, ChatCompletionChunk


def _session_spec(ttl_seconds: int) -> RequestSpec[SessionResponse]:
    # Not idempotent: every call mints a new token, so only never-sent failures are retried.
    return RequestSpec(
        "POST", "/api/auth/session", parse_model(SessionResponse), json={"ttl_seconds": ttl_seconds}
    )


def _whoami_spec() -> RequestSpec[WhoAmI]:
    return RequestSpec("GET", "/api/auth/whoami", parse_model(WhoAmI))


class _ClientInfo:
    _config: ClientConfig

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(base_url={self.base_url!r})"


class FinetuneLabClient(_ClientInfo):
    """Blocking client for the FineTune Lab API.

    `api_key` and `base_url` default to `FINETUNE_LAB_API_KEY` and `FINETUNE_LAB_API_URL`
    (else http://127.0.0.1:8484). Pass `http_client` to control proxies, TLS or transports;
    a client you pass is yours to close.
    """

    training_predictions: TrainingPredictions
    jobs: Jobs
    models: Models
    test_suites: TestSuites
    batch_test: BatchTest
    analytics: Analytics

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._config = ClientConfig.resolve(api_key, base_url, timeout, max_retries)
        self._transport = SyncTransport(self._config, http_client)
        self.training_predictions = TrainingPredictions(self._transport)
        self.jobs = Jobs(self._transport)
        self.models = Models(self._transport)
        self.test_suites = TestSuites(self._transport)
        self.batch_test = BatchTest(self._transport)
        self.analytics = Analytics(self._transport)

    @overload
    def predict(
        self,
        model: str,
        messages: str | Sequence[Message],
        *,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        stream: Literal[False] = ...,
        **extra: Any,
    ) -> ChatCompletion: ...

    @overload
    def predict(
        self,
        model: str,
        messages: str | Sequence[Message],
        *,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        stream: Literal[True],
        **extra: Any,
    ) -> Iterator[ChatCompletionChunk]: ...

    def predict(
        self,
        model: str,
        messages: str | Sequence[Message],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stream: bool = False,
        **extra: Any,
    ) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """A chat completion from a registered model (by name or id); a string is one user
        message. With `stream=True`, an iterator of chunks (the last has `finish_reason` and
        `usage`). Other OpenAI fields (`top_p`, `stop`, `seed`) pass through `extra`."""
        body = chat_body(model, messages, temperature, max_tokens, stream, extra)
        if stream:
            return iter_chunks(self._transport, body)
        return self._transport.execute(predict_spec(body))

    def create_session(self, ttl_seconds: int = 3600) -> SessionResponse:
        """A short-lived token for this key's user and scopes (what the dashboard uses)."""
        return self._transport.execute(_session_spec(ttl_seconds))

    def whoami(self) -> WhoAmI:
        """Which user, credential kind and scopes the server sees for this client."""
        return self._transport.execute(_whoami_spec())

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> FinetuneLabClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncFinetuneLabClient(_ClientInfo):
    """Async client; same surface as `FinetuneLabClient`, with `await` (and `async for`)."""

    training_predictions: AsyncTrainingPredictions
    jobs: AsyncJobs
    models: AsyncModels
    test_suites: AsyncTestSuites
    batch_test: AsyncBatchTest
    analytics: AsyncAnalytics

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = ClientConfig.resolve(api_key, base_url, timeout, max_retries)
        self._transport = AsyncTransport(self._config, http_client)
        self.training_predictions = AsyncTrainingPredictions(self._transport)
        self.jobs = AsyncJobs(self._transport)
        self.models = AsyncModels(self._transport)
        self.test_suites = AsyncTestSuites(self._transport)
        self.batch_test = AsyncBatchTest(self._transport)
        self.analytics = AsyncAnalytics(self._transport)

    @overload
    async def predict(
        self,
        model: str,
        messages: str | Sequence[Message],
        *,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        stream: Literal[False] = ...,
        **extra: Any,
    ) -> ChatCompletion: ...

    @overload
    async def predict(
        self,
        model: str,
        messages: str | Sequence[Message],
        *,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
        stream: Literal[True],
        **extra: Any,
    ) -> AsyncIterator[ChatCompletionChunk]: ...

    async def predict(
        self,
        model: str,
        messages: str | Sequence[Message],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stream: bool = False,
        **extra: Any,
    ) -> ChatCompletion | AsyncIterator[ChatCompletionChunk]:
        """A chat completion from a registered model (by name or id); a string is one user
        message. With `stream=True`, an iterator of chunks (the last has `finish_reason` and
        `usage`). Other OpenAI fields (`top_p`, `stop`, `seed`) pass through `extra`."""
        body = chat_body(model, messages, temperature, max_tokens, stream, extra)
        if stream:
            return aiter_chunks(self._transport, body)
        return await self._transport.execute(predict_spec(body))

    async def create_session(self, ttl_seconds: int = 3600) -> SessionResponse:
        """A short-lived token for this key's user and scopes (what the dashboard uses)."""
        return await self._transport.execute(_session_spec(ttl_seconds))

    async def whoami(self) -> WhoAmI:
        """Which user, credential kind and scopes the server sees for this client."""
        return await self._transport.execute(_whoami_spec())

    async def close(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncFinetuneLabClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
