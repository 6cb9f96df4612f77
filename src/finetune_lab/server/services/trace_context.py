"""W3C Trace Context (`traceparent`): our own model calls join the caller's trace as a child
span, or start a trace of their own."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

# version-traceid-parentid-flags; version ff is invalid, all-zero ids are invalid.
TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


@dataclass(frozen=True)
class SpanContext:
    trace_id: str
    span_id: str
    parent_span_id: str | None = None

    @classmethod
    def new(cls) -> SpanContext:
        """A root span of a new trace."""
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @classmethod
    def from_traceparent(cls, header: str | None) -> SpanContext:
        """A child of the caller's span when `header` is a valid traceparent; otherwise (absent
        or malformed, which the spec says to ignore) a new trace."""
        parent = parse_traceparent(header)
        if parent is None:
            return cls.new()
        trace_id, parent_span_id = parent
        return cls(trace_id, secrets.token_hex(8), parent_span_id)

    @classmethod
    def in_run(cls, run_id: str) -> SpanContext:
        """A span of a batch run: the run is one trace (its id's hex part), each prompt a span."""
        hex_part = run_id.removeprefix("run_")
        if re.fullmatch(r"[0-9a-f]{32}", hex_part) is None:
            return cls.new()
        return cls(hex_part, secrets.token_hex(8))

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """(trace id, parent span id) from a traceparent header, or None when it is not valid."""
    if not header:
        return None
    match = TRACEPARENT.match(header.strip())
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id
