"""Reading a Server-Sent Events stream, with or without resuming, written once for both clients.

`EventFlow` is the whole policy as a plain state machine with no I/O: which request opens the
stream (resuming after the last event id), what each line of the body yields, when the stream is
over, and how long to wait before reconnecting (or that the error is final). `iter_events` and
`aiter_events` are the thin drivers that do the I/O through a transport, the way httpx drives
its auth flows; neither contains a decision of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

import httpx

from finetune_lab.client._sse import ServerSentEvent, SSEDecoder
from finetune_lab.client._transport import (
    RETRY_AFTER_CAP,
    AsyncTransport,
    RequestSpec,
    SyncTransport,
    backoff_delay,
    map_transport_error,
)
from finetune_lab.errors import (
    APIConnectionError,
    FinetuneLabError,
    InternalServerError,
    RateLimitError,
)

T = TypeVar("T")

DEFAULT_MAX_RECONNECTS = 10

# A lost connection, and a server that is busy or briefly without its database (429, 5xx),
# count as one failed attempt of a resumable stream: it waits them out within `max_reconnects`.
RECONNECTABLE: tuple[type[FinetuneLabError], ...] = (
    APIConnectionError,  # includes APITimeoutError
    InternalServerError,
    RateLimitError,
)


class Done:
    """Returned by a flow's `parse` to end the stream (e.g. OpenAI's `data: [DONE]`)."""


DONE = Done()

Parse = Callable[[ServerSentEvent], T | Done | None]


class EventFlow(Generic[T]):
    """What one logical stream does, independent of sync or async I/O.

    `request(last_id)` builds the request that opens (or resumes) the stream; `parse` turns a
    raw event into an item, `None` to skip it, or `DONE` to end. With `max_reconnects=None` the
    stream is not resumable: the first failure is raised and the end of the body ends it.
    """

    def __init__(
        self,
        request: Callable[[int | None], RequestSpec[Any]],
        parse: Parse[T],
        *,
        last_id: int | None = None,
        max_reconnects: int | None = None,
        name: str = "the event stream",
    ) -> None:
        self._request = request
        self._parse = parse
        self.last_id = last_id
        self.max_reconnects = max_reconnects
        self.name = name
        self.failures = 0
        self.finished = False
        self._decoder = SSEDecoder()

    @property
    def resumable(self) -> bool:
        return self.max_reconnects is not None

    def connect(self) -> RequestSpec[Any]:
        """The request for the next connection; every connection starts a fresh decoder."""
        self._decoder = SSEDecoder()
        return self._request(self.last_id)

    def feed(self, line: str) -> T | None:
        """One line of the body: the item it completes, if any."""
        raw = self._decoder.feed(line)
        if raw is None:
            return None
        item = self._parse(raw)
        if isinstance(item, Done):
            self.finished = True
            return None
        if item is not None and raw.id is not None and raw.id.isdigit():
            self.last_id = int(raw.id)
            self.failures = 0  # data arrived: the connection worked
        return item

    def ended(self) -> FinetuneLabError | None:
        """The body ended cleanly: the error to recover from, or None when the stream is over."""
        if not self.resumable:
            self.finished = True
            return None
        return APIConnectionError(f"{self.name} ended")

    def retry_delay(self, error: Exception) -> float:
        """Seconds to wait before reconnecting after `error`; raises it when it is final."""
        if self.max_reconnects is None or not isinstance(error, RECONNECTABLE):
            raise error
        self.failures += 1
        if self.failures > self.max_reconnects:
            raise error
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_CAP)
        return backoff_delay(self.failures - 1)


def iter_events(transport: SyncTransport, flow: EventFlow[T]) -> Iterator[T]:
    """Drive `flow` over blocking I/O."""
    while not flow.finished:
        try:
            response = transport.open_stream(flow.connect())
        except FinetuneLabError as exc:
            transport.sleep(flow.retry_delay(exc))
            continue
        error: FinetuneLabError | None = None
        try:
            for line in response.iter_lines():
                item = flow.feed(line)
                if item is not None:
                    yield item
                if flow.finished:
                    return
            error = flow.ended()
        except httpx.TransportError as exc:
            error = map_transport_error(exc, response.request)
            error.__cause__ = exc
        finally:
            response.close()
        if error is not None:
            transport.sleep(flow.retry_delay(error))


async def aiter_events(transport: AsyncTransport, flow: EventFlow[T]) -> AsyncIterator[T]:
    """Drive `flow` over async I/O."""
    while not flow.finished:
        try:
            response = await transport.open_stream(flow.connect())
        except FinetuneLabError as exc:
            await transport.sleep(flow.retry_delay(exc))
            continue
        error: FinetuneLabError | None = None
        try:
            async for line in response.aiter_lines():
                item = flow.feed(line)
                if item is not None:
                    yield item
                if flow.finished:
                    return
            error = flow.ended()
        except httpx.TransportError as exc:
            error = map_transport_error(exc, response.request)
            error.__cause__ = exc
        finally:
            await response.aclose()
        if error is not None:
            await transport.sleep(flow.retry_delay(error))
