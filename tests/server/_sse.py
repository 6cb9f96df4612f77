"""A test-side SSE reader: a thread reads the stream, tests take events with a deadline."""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx


@dataclass
class Event:
    id: int
    event: str
    data: dict[str, Any]


class EventReader:
    """`with EventReader(base_url, path, headers) as r: r.next(timeout=5)`.

    Parses the wire format itself (not with the SDK's decoder) so the server is checked
    independently of the client code.
    """

    def __init__(
        self, base_url: str, path: str, headers: dict[str, str], params: dict | None = None
    ) -> None:
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=30)
        self._request = self._client.build_request("GET", path, params=params)
        self.events: queue.Queue[Event | BaseException | None] = queue.Queue()
        self.response: httpx.Response | None = None
        self.raw_lines: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> EventReader:
        self.response = self._client.send(self._request, stream=True)
        if self.response.status_code == 200:
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.response is not None
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines():
                self.raw_lines.append(line)
                if line == "":
                    if "data" in fields:
                        self.events.put(
                            Event(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                        )
                    fields = {}
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            self.events.put(None)  # the server ended the stream
        except BaseException as exc:  # closed by the test, or a real failure
            self.events.put(exc)

    def next(self, timeout: float = 10.0) -> Event:
        item = self.events.get(timeout=timeout)
        if not isinstance(item, Event):
            raise AssertionError(f"stream ended or failed: {item!r}")
        return item

    def next_of(self, kind: str, timeout: float = 10.0) -> Event:
        """The next event of `kind`, skipping heartbeats (and only heartbeats)."""
        while True:
            event = self.next(timeout)
            if event.event == kind:
                return event
            assert event.event == "heartbeat", (kind, event)

    def ended(self, timeout: float) -> bool:
        """True when the server closes the stream within `timeout` (heartbeats skipped)."""
        while True:
            try:
                item = self.events.get(timeout=timeout)
            except queue.Empty:
                return False
            if item is None:
                return True
            if not isinstance(item, Event):
                raise AssertionError(f"stream failed: {item!r}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.response is not None:
            self.response.close()
        self._client.close()
        self._thread.join(timeout=5) if self._thread.is_alive() else None
