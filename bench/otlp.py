"""Spans per second into one server: through OTLP (`POST /v1/traces`, the real OpenTelemetry
SDK's OTLP/HTTP exporter, protobuf, batches as its BatchSpanProcessor sends them) against our
JSON endpoint (`POST /api/analytics/traces`, one span a request, as the SDKs record them), in
the same run on the same server (SQLite by default; `--database-url` for PostgreSQL).

Each path sends the same GenAI chat spans (model, tokens, a prompt and a completion) and the
count stored is checked afterwards. Sending is single-threaded in both cases, so the figures
compare what one client gets, not the server's ceiling.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _common import running_server

OTLP_BATCH = 512  # BatchSpanProcessor's default max_export_batch_size


def make_spans(count: int) -> Sequence[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(count):
        with tracer.start_as_current_span("chat bench-model") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.request.model", "bench-model")
            span.set_attribute("gen_ai.usage.input_tokens", 40 + i % 7)
            span.set_attribute("gen_ai.usage.output_tokens", 10 + i % 5)
            span.add_event("gen_ai.user.message", {"content": f"question {i}?"})
            span.add_event("gen_ai.choice", {"index": 0, "message": f"answer {i}"})
    provider.shutdown()
    return memory.get_finished_spans()


def json_body(span: ReadableSpan, i: int) -> dict[str, object]:
    assert span.context is not None
    return {
        "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "span_name": span.name,
        "operation": "chat",
        "model": "bench-model",
        "prompt_tokens": 40 + i % 7,
        "completion_tokens": 10 + i % 5,
        "input": [{"role": "user", "content": f"question {i}?"}],
        "output": f"answer {i}",
    }


def count_stored(http: httpx.Client, model: str) -> int:
    data = http.get("/api/analytics/data", params={"model": model, "granularity": "day"}).json()
    return int(data["totals"]["request_count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=4096, help="spans through OTLP")
    parser.add_argument("--json-spans", type=int, default=1000, help="spans through JSON")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    spans = make_spans(max(args.spans, args.json_spans))
    with running_server(args.database_url) as server:
        http = httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=120)
        exporter = OTLPSpanExporter(
            endpoint=f"{server.url}/v1/traces", headers={"x-api-key": server.key}, timeout=120
        )
        otlp_spans = spans[: args.spans]
        started = time.perf_counter()
        for start in range(0, len(otlp_spans), OTLP_BATCH):
            result = exporter.export(otlp_spans[start : start + OTLP_BATCH])
            assert result == SpanExportResult.SUCCESS, result
        otlp_s = time.perf_counter() - started
        assert count_stored(http, "bench-model") == len(otlp_spans)

        json_spans = spans[: args.json_spans]
        started = time.perf_counter()
        for i, span in enumerate(json_spans):
            body = json_body(span, i)
            body["model"] = "bench-json"
            http.post("/api/analytics/traces", json=body).raise_for_status()
        json_s = time.perf_counter() - started
        assert count_stored(http, "bench-json") == len(json_spans)

        otlp_rate, json_rate = len(otlp_spans) / otlp_s, len(json_spans) / json_s
        backend = "postgresql" if args.database_url else "sqlite"
        print(f"otlp ({backend}, one client thread):")
        print(
            f"  POST /v1/traces (protobuf, {OTLP_BATCH} spans a request): "
            f"{len(otlp_spans)} spans in {otlp_s:.2f} s = {otlp_rate:,.0f} spans/s"
        )
        print(
            f"  POST /api/analytics/traces (JSON, 1 span a request):    "
            f"{len(json_spans)} spans in {json_s:.2f} s = {json_rate:,.0f} spans/s"
        )
        print(f"  OTLP / JSON: {otlp_rate / json_rate:.1f}x")
        http.close()
        exporter.shutdown()


if __name__ == "__main__":
    main()
