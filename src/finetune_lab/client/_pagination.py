"""Walking a paged list to its end, written once for both clients.

`CursorWalk` and `OffsetWalk` are the policies with no I/O: the request for the next page, the
rows a page holds, and when the walk is over (a page without rows; then no `next_cursor`, or
`total_count` rows read). `iter_rows` and `aiter_rows` are the thin drivers that fetch the
pages through a transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

from finetune_lab.client._transport import AsyncTransport, RequestSpec, SyncTransport


class CursorPage(Protocol):
    @property
    def next_cursor(self) -> str | None: ...


class CountedPage(Protocol):
    @property
    def total_count(self) -> int: ...


P = TypeVar("P", bound=CursorPage)
C = TypeVar("C", bound=CountedPage)
T = TypeVar("T")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class PageWalk(Protocol[T, R_co]):
    """What the drivers need of a walk over pages `T` holding rows `R_co`."""

    def next_request(self) -> RequestSpec[T] | None: ...

    def receive(self, page: T) -> Sequence[R_co]: ...


class CursorWalk(Generic[P, R]):
    """`request(cursor)` asks for the page after `cursor` (None: the first); `rows(page)`
    picks the page's items."""

    def __init__(
        self, request: Callable[[str | None], RequestSpec[P]], rows: Callable[[P], Sequence[R]]
    ) -> None:
        self._request = request
        self._rows = rows
        self._cursor: str | None = None
        self.finished = False

    def next_request(self) -> RequestSpec[P] | None:
        """The request for the next page, or None once the last page was read."""
        return None if self.finished else self._request(self._cursor)

    def receive(self, page: P) -> Sequence[R]:
        """Take in a page: its rows, and where the next page starts (if anywhere)."""
        rows = self._rows(page)
        self._cursor = page.next_cursor
        if not rows or not self._cursor:
            self.finished = True
        return rows


class OffsetWalk(Generic[C, R]):
    """`request(offset)` asks for the page starting at row `offset`; `rows(page)` picks the
    page's items. For orders the cursor does not follow (a list sorted by a score)."""

    def __init__(
        self, request: Callable[[int], RequestSpec[C]], rows: Callable[[C], Sequence[R]]
    ) -> None:
        self._request = request
        self._rows = rows
        self._offset = 0
        self.finished = False

    def next_request(self) -> RequestSpec[C] | None:
        """The request for the next page, or None once the last page was read."""
        return None if self.finished else self._request(self._offset)

    def receive(self, page: C) -> Sequence[R]:
        """Take in a page: its rows; the walk ends with an empty page or at `total_count`."""
        rows = self._rows(page)
        self._offset += len(rows)
        if not rows or self._offset >= page.total_count:
            self.finished = True
        return rows


def iter_rows(transport: SyncTransport, walk: PageWalk[T, R]) -> Iterator[R]:
    """Drive `walk` over blocking I/O: every row, page by page."""
    while (spec := walk.next_request()) is not None:
        yield from walk.receive(transport.execute(spec))


async def aiter_rows(transport: AsyncTransport, walk: PageWalk[T, R]) -> AsyncIterator[R]:
    """Drive `walk` over async I/O: every row, page by page."""
    while (spec := walk.next_request()) is not None:
        for row in walk.receive(await transport.execute(spec)):
            yield row
