"""OpenTelemetry in: spans made by the real `opentelemetry-sdk` and sent by its OTLP/HTTP
exporter arrive at `POST /v1/traces` on both backends; OTLP/JSON and gzip work too; a bad key,
a missing scope or a bad payload stores nothing."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Sequence

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from _support.appserver import ServerHandle
from server._helpers import assert_error

from .conftest import NewUser, User


def make_spans(model: str = "gpt-4o-mini", *, fail: bool = False) -> Sequence[ReadableSpan]:
    """A parent span (the app's request) and a child `chat` span with GenAI attributes, made
    by the real SDK and kept in memory until a test exports them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.app", "1.2.3")
    with tracer.start_as_current_span("handle request") as parent:
        parent.set_attribute("http.route", "/ask")
        with tracer.start_as_current_span(f"chat {model}") as child:
            child.set_attribute("gen_ai.operation.name", "chat")
            child.set_attribute("gen_ai.system", "openai")
            child.set_attribute("gen_ai.request.model", model)
            child.set_attribute("gen_ai.request.temperature", 0.2)
            child.set_attribute("gen_ai.usage.input_tokens", 42)
            child.set_attribute("gen_ai.usage.output_tokens", 7)
            child.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            child.set_attribute("gen_ai.conversation.id", "conv-9")
            child.add_event("gen_ai.user.message", {"content": "what is 2+2?"})
            child.add_event("gen_ai.choice", {"index": 0, "message": "4", "finish_reason": "stop"})
            if fail:
                child.set_attribute("error.type", "RateLimitError")
                child.set_status(Status(StatusCode.ERROR, "upstream said no"))
        if fail:  # the parent caught it and went on: an exception event, not a failure
            parent.record_exception(RuntimeError("retried once"))
    provider.shutdown()
    spans = memory.get_finished_spans()
    assert [s.name for s in spans] == [f"chat {model}", "handle request"]
    return spans


def hex_ids(spans: Sequence[ReadableSpan]) -> tuple[str, str, str]:
    """(trace id, parent span id, child span id) as OTLP writes them: lowercase hex."""
    child, parent = spans
    assert child.context is not None and parent.context is not None
    return (
        format(parent.context.trace_id, "032x"),
        format(parent.context.span_id, "016x"),
        format(child.context.span_id, "016x"),
    )


def exporter(
    server: ServerHandle, key: str, compression: Compression = Compression.NoCompression
) -> OTLPSpanExporter:
    return OTLPSpanExporter(
        endpoint=f"{server.base_url}/v1/traces",
        headers={"x-api-key": key},
        timeout=30,
        compression=compression,
    )


def spans_of(user: User, trace_id: str) -> list[dict]:
    resp = user.http.get("/api/analytics/traces", params={"trace_id": trace_id, "limit": 100})
    assert resp.status_code == 200, resp.text
    return resp.json()["traces"]


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_sdk_export_parent_and_child_chat_span(
    server: ServerHandle, new_user: NewUser, compression: Compression
) -> None:
    user = new_user("production")
    spans = make_spans()
    trace_id, parent_id, child_id = hex_ids(spans)
    assert exporter(server, user.key, compression).export(spans) == (SpanExportResult.SUCCESS)
    stored = {s["span_id"]: s for s in spans_of(user, trace_id)}
    assert set(stored) == {parent_id, child_id}
    child, parent = stored[child_id], stored[parent_id]
    assert child["parent_span_id"] == parent_id and parent["parent_span_id"] is None
    assert {s["trace_id"] for s in stored.values()} == {trace_id}
    assert child["span_name"] == "chat gpt-4o-mini" and parent["span_name"] == "handle request"
    assert (child["model"], child["provider"], child["operation"]) == (
        "gpt-4o-mini",
        "openai",
        "chat",
    )
    assert (child["prompt_tokens"], child["completion_tokens"], child["total_tokens"]) == (
        42,
        7,
        49,
    )
    assert child["finish_reason"] == "stop" and child["status"] == "success"
    assert child["conversation_id"] == "conv-9"
    assert child["input"] == [{"role": "user", "content": "what is 2+2?"}]
    assert child["output"] == "4"
    assert child["metadata"]["gen_ai.request.temperature"] == 0.2
    assert child["metadata"]["otel.resource"]["service.name"] == "shop-bot"
    assert child["metadata"]["otel.scope"] == {"name": "test.app", "version": "1.2.3"}
    assert parent["metadata"]["http.route"] == "/ask" and parent["model"] is None
    child_span = spans[0]
    assert child_span.start_time is not None and child_span.end_time is not None
    want_ms = (child_span.end_time - child_span.start_time) / 1e6
    assert child["latency_ms"] == pytest.approx(want_ms, abs=1e-3)
    # The parent encloses the child in time, as the SDK recorded them.
    assert parent["start_time"] <= child["start_time"] <= child["end_time"] <= parent["end_time"]
    # The spans count in the aggregates like any other call.
    models = user.http.get("/api/analytics/data", params={"granularity": "day"}).json()["models"]
    by_model = {m["model"]: m for m in models}
    assert by_model["gpt-4o-mini"]["total_tokens"] == 49
    # The conversation filter finds the child.
    found = user.http.get("/api/analytics/traces", params={"conversation_id": "conv-9"}).json()
    assert [t["span_id"] for t in found["traces"]] == [child_id]


def test_error_status_and_bearer_auth(server: ServerHandle, new_user: NewUser) -> None:
    user = new_user("production")
    spans = make_spans("m-err", fail=True)
    trace_id, parent_id, child_id = hex_ids(spans)
    bearer = OTLPSpanExporter(
        endpoint=f"{server.base_url}/v1/traces",
        headers={"Authorization": f"Bearer {user.key}"},
        timeout=30,
    )
    assert bearer.export(spans) == SpanExportResult.SUCCESS
    stored = {s["span_id"]: s for s in spans_of(user, trace_id)}
    child, parent = stored[child_id], stored[parent_id]
    assert (child["status"], child["error"], child["error_type"]) == (
        "error",
        "upstream said no",
        "RateLimitError",
    )
    assert (parent["status"], parent["error"]) == ("success", None)
    [event] = parent["metadata"]["otel.events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.message"] == "retried once"


def test_bad_key_or_scope_stores_nothing(server: ServerHandle, new_user: NewUser) -> None:
    owner = new_user("production")
    spans = make_spans()
    trace_id, _, _ = hex_ids(spans)
    assert exporter(server, "flk_not-a-key").export(spans) == SpanExportResult.FAILURE
    training_only = new_user("training")
    assert exporter(server, training_only.key).export(spans) == SpanExportResult.FAILURE
    raw = spans_to_json(spans)
    resp = httpx.post(f"{server.base_url}/v1/traces", json=raw, headers={"x-api-key": "flk_bad"})
    assert_error(resp, 401)
    resp = httpx.post(f"{server.base_url}/v1/traces", json=raw)
    assert_error(resp, 401)
    resp = training_only.http.post("/v1/traces", json=raw)
    assert_error(resp, 403)
    # Stored under nobody: the production user sees none of it, nor would anyone else.
    assert spans_of(owner, trace_id) == []
    assert owner.http.get("/api/analytics/traces").json()["traces"] == []


def spans_to_json(spans: Sequence[ReadableSpan]) -> dict:
    """OTLP/JSON as the specification writes it: camelCase keys, hex ids, enums as numbers,
    64-bit integers as strings."""
    resource_spans = []
    for span in spans:
        assert span.context is not None
        attributes = [
            {"key": key, "value": _any(value)} for key, value in (span.attributes or {}).items()
        ]
        out: dict = {
            "traceId": format(span.context.trace_id, "032x"),
            "spanId": format(span.context.span_id, "016x"),
            "name": span.name,
            "kind": span.kind.value + 1,
            "startTimeUnixNano": str(span.start_time),
            "endTimeUnixNano": str(span.end_time),
            "attributes": attributes,
            "events": [
                {
                    "timeUnixNano": str(event.timestamp),
                    "name": event.name,
                    "attributes": [
                        {"key": k, "value": _any(v)} for k, v in (event.attributes or {}).items()
                    ],
                }
                for event in span.events
            ],
            "status": {"code": span.status.status_code.value},
        }
        if span.parent is not None:
            out["parentSpanId"] = format(span.parent.span_id, "016x")
        resource_spans.append(
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "shop-bot"}}]
                },
                "scopeSpans": [{"scope": {"name": "test.app"}, "spans": [out]}],
            }
        )
    return {"resourceSpans": resource_spans}


def _any(value: object) -> dict:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any(v) for v in value]}}
    return {"stringValue": str(value)}


@pytest.mark.parametrize("gzipped", [False, True])
def test_otlp_json_encoding(server: ServerHandle, new_user: NewUser, gzipped: bool) -> None:
    user = new_user("production")
    spans = make_spans("json-model")
    trace_id, parent_id, child_id = hex_ids(spans)
    body = json.dumps(spans_to_json(spans)).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    resp = user.http.post("/v1/traces", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {}  # full success: partialSuccess left unset
    stored = {s["span_id"]: s for s in spans_of(user, trace_id)}
    assert set(stored) == {parent_id, child_id}
    child = stored[child_id]
    assert child["parent_span_id"] == parent_id
    assert (child["model"], child["prompt_tokens"], child["completion_tokens"]) == (
        "json-model",
        42,
        7,
    )
    assert child["metadata"]["otel.span_kind"] == "SPAN_KIND_INTERNAL"


def test_partial_success_rejects_bad_spans_only(server: ServerHandle, new_user: NewUser) -> None:
    user = new_user("production")
    spans = make_spans("partial")
    trace_id, parent_id, child_id = hex_ids(spans)
    payload = spans_to_json(spans)
    bad = json.loads(json.dumps(payload["resourceSpans"][0]))
    bad["scopeSpans"][0]["spans"][0]["spanId"] = "not-hex"
    payload["resourceSpans"].append(bad)
    resp = user.http.post("/v1/traces", json=payload)
    assert resp.status_code == 200, resp.text
    partial = resp.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"  # int64: a string in protobuf's JSON mapping
    assert "resourceSpans[2].scopeSpans[0].spans[0]: spanId" in partial["errorMessage"]
    assert {s["span_id"] for s in spans_of(user, trace_id)} == {parent_id, child_id}
    # The same over protobuf: the answer is an ExportTraceServiceResponse.
    more = make_spans("partial-pb")
    pb_trace, _, _ = hex_ids(more)
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    message = encode_spans(more)
    message.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x00" * 16
    resp = user.http.post(
        "/v1/traces",
        content=message.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(resp.content)
    assert answer.partial_success.rejected_spans == 1
    assert len(spans_of(user, pb_trace)) == 1


def test_bad_payloads_store_nothing(server: ServerHandle, new_user: NewUser) -> None:
    user = new_user("production")
    spans = make_spans("never")
    trace_id, _, _ = hex_ids(spans)
    good = spans_to_json(spans)
    broken = json.loads(json.dumps(good))  # one good span, one that no parser accepts
    broken["resourceSpans"][1]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = "soon"
    pb = {"Content-Type": "application/x-protobuf"}
    js = {"Content-Type": "application/json"}
    cases = [
        (b"\xff\xff\xff\xff garbage", pb, 400),
        (b"{not json", js, 400),
        (b"[1, 2]", js, 400),
        (json.dumps(broken).encode(), js, 400),
        (b"\x1f\x8b not gzip", {**js, "Content-Encoding": "gzip"}, 400),
        (gzip.compress(json.dumps(good).encode())[:-8], {**js, "Content-Encoding": "gzip"}, 400),
        (json.dumps(good).encode(), {"Content-Type": "text/plain"}, 415),
        (json.dumps(good).encode(), {**js, "Content-Encoding": "br"}, 415),
    ]
    for body, headers, status in cases:
        resp = user.http.post("/v1/traces", content=body, headers=headers)
        error = assert_error(resp, status)
        assert error["message"], error
    # Over the body cap as sent (the cap of every route), and a gzip bomb: a small body
    # that unpacks past it.
    resp = user.http.post("/v1/traces", content=b"\0" * (33 * 1024 * 1024), headers=pb)
    assert_error(resp, 413)
    bomb = gzip.compress(b" " * (33 * 1024 * 1024))
    resp = user.http.post("/v1/traces", content=bomb, headers={**js, "Content-Encoding": "gzip"})
    assert_error(resp, 413)
    assert spans_of(user, trace_id) == []
    assert user.http.get("/api/analytics/traces").json()["traces"] == []


def test_spans_are_private(server: ServerHandle, new_user: NewUser) -> None:
    alice, bob = new_user("production"), new_user("production")
    spans = make_spans(f"private-{uuid.uuid4().hex[:6]}")
    trace_id, _, _ = hex_ids(spans)
    assert exporter(server, alice.key).export(spans) == SpanExportResult.SUCCESS
    assert len(spans_of(alice, trace_id)) == 2
    assert spans_of(bob, trace_id) == []


def test_current_genai_message_attributes(server: ServerHandle, new_user: NewUser) -> None:
    """The current conventions carry messages as JSON-text attributes with `parts`, the
    provider as `gen_ai.provider.name`; only the response may name the model."""
    user = new_user("production")
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "aws.bedrock")
        span.set_attribute("gen_ai.response.model", "nova-lite-v1")
        span.set_attribute(
            "gen_ai.input.messages",
            json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi?"}]}]),
        )
        span.set_attribute(
            "gen_ai.output.messages",
            json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": "Hello!"}],
                        "finish_reason": "stop",
                    }
                ]
            ),
        )
        span.set_attribute("gen_ai.usage.input_tokens", 3)
    provider.shutdown()
    spans = memory.get_finished_spans()
    assert exporter(server, user.key).export(spans) == SpanExportResult.SUCCESS
    assert spans[0].context is not None
    [stored] = spans_of(user, format(spans[0].context.trace_id, "032x"))
    assert (stored["model"], stored["provider"], stored["operation"]) == (
        "nova-lite-v1",
        "aws.bedrock",
        "chat",
    )
    assert stored["input"] == [{"role": "user", "parts": [{"type": "text", "content": "Hi?"}]}]
    assert stored["output"] == "Hello!"
    assert (stored["prompt_tokens"], stored["completion_tokens"], stored["total_tokens"]) == (
        3,
        None,
        3,
    )
    assert "gen_ai.input.messages" not in stored["metadata"]
