"""What every backend takes and gives back, independent of where the model runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_MAX_TOKENS = 256


@dataclass(frozen=True)
class GenerationParams:
    messages: list[dict[str, str]]  # [{role, content}] with plain-text content
    temperature: float | None = None  # None: the backend's default (1.0, as OpenAI)
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # stop | length (| whatever an upstream reports)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


# A stream yields text deltas (str) and ends with one Completion holding the whole answer.
StreamEvent = str | Completion


class BackendError(Exception):
    """A failure to report to the caller with this HTTP status and error type."""

    def __init__(
        self,
        status_code: int,
        error_type: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.message = message
        self.details = details
        self.headers = headers


class Backend(Protocol):
    async def complete(self, model: Any, params: GenerationParams) -> Completion: ...

    def stream(self, model: Any, params: GenerationParams) -> AsyncIterator[StreamEvent]: ...


class StopTrimmer:
    """Cuts streamed text at the first stop sequence, holding back what could be its prefix."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.text = ""
        self.sent = 0
        self.stopped = False

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        self.text += delta
        cut = self.first_stop(self.text)
        if cut is not None:
            self.stopped = True
            self.text = self.text[:cut]
            return self._release(len(self.text))
        return self._release(max(self.sent, len(self.text) - self.hold))

    def flush(self) -> str:
        return self._release(len(self.text))

    def first_stop(self, text: str) -> int | None:
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        return min(hits) if hits else None

    def _release(self, upto: int) -> str:
        out = self.text[self.sent : upto]
        self.sent = max(self.sent, upto)
        return out
