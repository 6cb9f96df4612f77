"""Background work yields to ingest: grading waits for a quiet moment before it uses the
database or the CPU, so a training run's uploads never queue behind judges.

Both sides run on the server's event loop (the ingest route enters and leaves here around its
worker-thread call), so no lock is needed. In-process only: another server process's ingests
are not seen (its own judge worker yields to them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator


class IngestActivity:
    def __init__(self, settle_s: float = 0.05, max_wait_s: float = 2.0) -> None:
        self.settle_s = settle_s  # quiet means no ingest for this long
        self.max_wait_s = max_wait_s  # background work waits at most this long, then goes
        self.in_flight = 0
        self.last_end = 0.0

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last_end = time.monotonic()

    def _busy(self) -> bool:
        return self.in_flight > 0 or time.monotonic() - self.last_end < self.settle_s

    async def quiet(self, max_wait_s: float | None = None) -> None:
        """Return once no ingest ran for `settle_s`, or after `max_wait_s` (this instance's
        unless given) in any case (so a steady upload slows grading down but never stops it)."""
        wait = self.max_wait_s if max_wait_s is None else max_wait_s
        deadline = time.monotonic() + wait
        while self._busy() and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(self.settle_s, left))
