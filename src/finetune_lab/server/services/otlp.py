"""OTLP/HTTP trace export in: decode a request (protobuf or JSON, gzip or not) and map its
spans onto trace rows, OpenTelemetry's GenAI semantic conventions onto our own fields.

Decoding is `opentelemetry-proto`'s generated messages; OTLP/JSON is protobuf's JSON mapping
except that trace and span ids are hex rather than base64, which `_hex_ids_to_base64` fixes
before parsing. A span we cannot store (bad ids, values a JSON column refuses) is rejected on
its own and counted in `partial_success`; a request we cannot read is refused whole (400).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from finetune_lab.schema import MAX_TEXT_CHARS, _no_nul, check_json_value
from finetune_lab.server.errors import APIError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
OPERATION = "otel"  # a span that names no gen_ai.operation.name
MAX_SHORT = 512  # model, provider, operation, span name, conversation: String(512) columns
MAX_FINISH_REASON = 16

# GenAI semantic conventions → our columns (older spellings after the current ones).
MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model")
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
INPUT_KEYS = ("gen_ai.input.messages", "gen_ai.prompt")
OUTPUT_KEYS = ("gen_ai.output.messages", "gen_ai.completion")
# Message events of the older conventions: their role, and whether they are output.
MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
MAPPED = {
    *MODEL_KEYS,
    *PROVIDER_KEYS,
    *INPUT_TOKEN_KEYS,
    *OUTPUT_TOKEN_KEYS,
    *INPUT_KEYS,
    *OUTPUT_KEYS,
    "gen_ai.operation.name",
    "gen_ai.conversation.id",
    "error.type",
}


class RejectedSpan(ValueError):
    """This span cannot be stored; the rest of the request can."""


@dataclass
class Decoded:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


# --- the request ------------------------------------------------------------------------


def media_type(content_type: str | None) -> str:
    """The request's encoding; 415 for anything OTLP/HTTP does not define."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in (PROTOBUF, JSON):
        return kind
    raise APIError(
        415,
        f"Content-Type must be {PROTOBUF} or {JSON} (OTLP/HTTP), got {content_type!r}",
        type="unsupported_media_type",
    )


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body as sent before `Content-Encoding` (gzip or none), held to `limit` bytes
    unpacked as well as packed: a small bomb is refused before it fills memory."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise APIError(
            415,
            f"Content-Encoding must be gzip or absent, got {encoding!r}",
            type="unsupported_media_type",
        )
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise APIError(400, f"the body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise APIError(413, f"the body unpacks to over {limit} bytes", type="payload_too_large")
    if not inflater.eof:
        raise APIError(400, "the gzip body is truncated")
    return out


def parse(body: bytes, kind: str) -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest, or 400 saying why the body is not one."""
    request = ExportTraceServiceRequest()
    if kind == PROTOBUF:
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise APIError(
                400, f"the body is not an OTLP ExportTraceServiceRequest: {exc}"
            ) from None
        return request
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise APIError(400, "the body must be a JSON object (an ExportTraceServiceRequest)")
    try:
        json_format.ParseDict(_hex_ids_to_base64(data), request, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise APIError(
            400, f"the body is not an OTLP/JSON ExportTraceServiceRequest: {exc}"
        ) from None
    return request


def _hex_ids_to_base64(data: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON writes ids as hex; protobuf's JSON parser reads bytes as base64. An id that
    is not hex becomes empty, so its span is rejected rather than the whole request."""

    def convert(holder: Any) -> None:
        if not isinstance(holder, dict):
            return
        for key in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"):
            value = holder.get(key)
            if isinstance(value, str):
                try:
                    holder[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    holder[key] = ""

    for resource_spans in _list(data, "resourceSpans", "resource_spans"):
        for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _list(scope_spans, "spans"):
                convert(span)
                for link in _list(span, "links") if isinstance(span, dict) else []:
                    convert(link)
    return data


def _list(holder: Any, *keys: str) -> list[Any]:
    if isinstance(holder, dict):
        for key in keys:
            value = holder.get(key)
            if isinstance(value, list):
                return value
    return []


def response(decoded: Decoded, kind: str) -> bytes:
    """ExportTraceServiceResponse in the request's encoding; partial_success only when
    something was rejected (the spec: leave it unset on full success)."""
    message = ExportTraceServiceResponse()
    if decoded.rejected:
        message.partial_success.rejected_spans = decoded.rejected
        message.partial_success.error_message = "; ".join(decoded.errors[:10])
    if kind == PROTOBUF:
        return message.SerializeToString()
    return orjson.dumps(json_format.MessageToDict(message))


# --- spans → rows -----------------------------------------------------------------------


def decode(request: ExportTraceServiceRequest) -> Decoded:
    decoded = Decoded()
    for where, span, resource, scope in _spans(request):
        try:
            decoded.rows.append(span_row(span, resource, scope))
        except RejectedSpan as exc:
            decoded.rejected += 1
            decoded.errors.append(f"{where}: {exc}")
    return decoded


def _spans(request: ExportTraceServiceRequest) -> Iterator[tuple[str, Span, Any, Any]]:
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope
            scope_info = {"name": scope.name, "version": scope.version} if scope.name else None
            for i, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                yield where, span, resource, scope_info


def span_row(span: Span, resource: dict[str, Any], scope: dict[str, Any] | None) -> dict[str, Any]:
    """One span as a trace row, or RejectedSpan."""
    trace_id = _id(span.trace_id, 16, "traceId")
    span_id = _id(span.span_id, 8, "spanId")
    parent = _id(span.parent_span_id, 8, "parentSpanId") if span.parent_span_id else None
    attrs = _attributes(span.attributes)
    start = _time(span.start_time_unix_nano)
    end = _time(span.end_time_unix_nano)
    latency = None
    if start is not None and end is not None:
        if end < start:
            raise RejectedSpan("endTimeUnixNano is before startTimeUnixNano")
        latency = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    prompt_tokens = _count(attrs, INPUT_TOKEN_KEYS)
    completion_tokens = _count(attrs, OUTPUT_TOKEN_KEYS)
    total = None
    if prompt_tokens is not None or completion_tokens is not None:
        total = (prompt_tokens or 0) + (completion_tokens or 0)
    finish_reasons = attrs.pop("gen_ai.response.finish_reasons", None)
    if isinstance(finish_reasons, str):
        finish_reasons = [finish_reasons]
    inputs, outputs, other_events, error = _events(span)
    input_value = _first(attrs, INPUT_KEYS)
    output_value = _first(attrs, OUTPUT_KEYS)
    # Failed: an ERROR status, or GenAI's `error.type` (set when the operation ended in an
    # error). An exception event alone is not a failure: it may have been handled.
    failed = span.status.code == Status.STATUS_CODE_ERROR or attrs.get("error.type") is not None
    exception = error or {}
    metadata: dict[str, Any] = {key: value for key, value in attrs.items() if key not in MAPPED}
    metadata["otel.span_kind"] = Span.SpanKind.Name(span.kind)
    if finish_reasons:
        metadata["gen_ai.response.finish_reasons"] = finish_reasons
    if resource:
        metadata["otel.resource"] = resource
    if scope:
        metadata["otel.scope"] = scope
    if other_events:
        metadata["otel.events"] = other_events
    row: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "span_name": _short(span.name) or None,
        "model": _short(_first(attrs, MODEL_KEYS)),
        "provider": _short(_first(attrs, PROVIDER_KEYS)),
        "operation": _short(attrs.get("gen_ai.operation.name")) or OPERATION,
        "conversation_id": _short(attrs.get("gen_ai.conversation.id")),
        "status": "error" if failed else "success",
        "error": _text(span.status.message or exception.get("message")) if failed else None,
        "error_type": _short(attrs.get("error.type") or exception.get("type")) if failed else None,
        "latency_ms": latency,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
        "finish_reason": (
            str(finish_reasons[0])[:MAX_FINISH_REASON]
            if isinstance(finish_reasons, list) and finish_reasons
            else None
        ),
        "input": _json(_messages(input_value) if input_value is not None else inputs or None),
        "output": _text(_output_text(output_value) if output_value is not None else outputs),
        "metadata": _json(metadata),
        "start_time": start,
        "end_time": end,
        "created_at": start or datetime.now(timezone.utc),
    }
    return row


def _events(span: Span) -> tuple[list[Any], str | None, list[Any], dict[str, Any] | None]:
    """(input messages, output text, other events, the exception) from span events."""
    inputs: list[Any] = []
    outputs: list[str] = []
    others: list[Any] = []
    error: dict[str, Any] | None = None
    for event in span.events:
        attrs = _attributes(event.attributes)
        name = event.name
        if name in MESSAGE_EVENTS:
            message = {"role": attrs.get("role") or MESSAGE_EVENTS[name]}
            message["content"] = attrs.get("content")
            inputs.append(message)
        elif name == "gen_ai.choice":
            content = attrs.get("message", attrs.get("content"))
            if isinstance(content, dict):
                content = content.get("content")
            if content is not None:
                outputs.append(
                    content if isinstance(content, str) else orjson.dumps(content).decode()
                )
        elif name == "gen_ai.content.prompt" and "gen_ai.prompt" in attrs:
            inputs.extend(_as_list(_messages(attrs["gen_ai.prompt"])))
        elif name == "gen_ai.content.completion" and "gen_ai.completion" in attrs:
            outputs.append(_output_text(attrs["gen_ai.completion"]) or "")
        elif name == "gen_ai.client.inference.operation.details":
            if "gen_ai.input.messages" in attrs:
                inputs.extend(_as_list(_messages(attrs["gen_ai.input.messages"])))
            if "gen_ai.output.messages" in attrs:
                outputs.append(_output_text(attrs["gen_ai.output.messages"]) or "")
        elif name == "exception":
            error = {
                "type": attrs.get("exception.type"),
                "message": attrs.get("exception.message"),
            }
            others.append({"name": name, "attributes": attrs})
        else:
            others.append({"name": name, "attributes": attrs} if attrs else {"name": name})
    return inputs, ("\n".join(outputs) if outputs else None), others, error


def _messages(value: Any) -> Any:
    """Message lists arrive as JSON text in a string attribute (the conventions say so)."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _output_text(value: Any) -> str | None:
    """The completion as text: the assistant's text parts when it is a message list."""
    value = _messages(value)
    if isinstance(value, str) or value is None:
        return value
    texts: list[str] = []
    for message in _as_list(value):
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                texts.append(message["content"])
            for part in message.get("parts") or []:
                if isinstance(part, dict) and isinstance(part.get("content"), str):
                    texts.append(part["content"])
    return "\n".join(texts) if texts else orjson.dumps(value).decode()


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if attrs.get(key) is not None:
            return attrs[key]
    return None


def _count(attrs: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    value = _first(attrs, keys)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RejectedSpan(f"{keys[0]} must be a number, got {value!r}")
    try:
        count = int(value)
    except ValueError:
        raise RejectedSpan(f"{keys[0]} must be a number, got {value!r}") from None
    if not 0 <= count <= 2**53:
        raise RejectedSpan(f"{keys[0]} is out of range: {count}")
    return count


def _id(raw: bytes, size: int, name: str) -> str:
    if len(raw) != size or not any(raw):
        raise RejectedSpan(f"{name} must be {size} bytes, not all zero ({2 * size} hex digits)")
    return binascii.hexlify(raw).decode()


def _time(nanos: int) -> datetime | None:
    if not nanos:
        return None
    try:
        return datetime.fromtimestamp(nanos / 1e9, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise RejectedSpan(f"time {nanos} ns is out of range") from None


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return _checked(text[:MAX_SHORT]) or None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return _checked(str(value)[:MAX_TEXT_CHARS])


def _checked(text: str) -> str:
    try:
        return _no_nul(text)
    except ValueError as exc:
        raise RejectedSpan(str(exc)) from None


def _json(value: Any) -> Any:
    try:
        return check_json_value(value, "attribute")
    except ValueError as exc:
        raise RejectedSpan(str(exc)) from None


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


def _value(value: AnyValue) -> Any:
    """An OTLP AnyValue as plain JSON data (bytes as base64 text)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "double_value" and value.double_value != value.double_value:
        return None  # NaN has no JSON spelling
    return getattr(value, kind)
