"""Walking a cursor-paged list to its end, written once for both clients.

`CursorWalk` is the policy with no I/O: the request for the next page, the rows a page holds,
and when the walk is over (a page without rows, or without a `next_cursor`). `iter_rows` and
`aiter_rows` are the thin drivers that fetch the pages through a transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

from finetune_lab.client._transport import AsyncTransport, RequestSpec, SyncTransport


class CursorPage(Protocol):
    @property
    def next_cursor(self) -> str | None: ...


P = TypeVar("P", bound=CursorPage)
R = TypeVar("R")


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


def iter_rows(transport: SyncTransport, walk: CursorWalk[P, R]) -> Iterator[R]:
    """Drive `walk` over blocking I/O: every row, page by page."""
    while (spec := walk.next_request()) is not None:
        yield from walk.receive(transport.execute(spec))


async def aiter_rows(transport: AsyncTransport, walk: CursorWalk[P, R]) -> AsyncIterator[R]:
    """Drive `walk` over async I/O: every row, page by page."""
    while (spec := walk.next_request()) is not None:
        for row in walk.receive(await transport.execute(spec)):
            yield row
