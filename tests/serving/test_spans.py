"""Traces are spans: the requests the upstream SDKs (finetune_lab 0.6, Python and TypeScript)
send for analytics and batch tests are accepted and answered in the shapes they read; our own
predict calls record spans that join the caller's W3C trace; spans filter by trace,
conversation, model, status and time."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI
from server._helpers import assert_error

from .conftest import NewUser, User, register_remote

TRACES = "/api/analytics/traces"
DATA = "/api/analytics/data"


def listed(user: User, **params: str | int) -> list[dict]:
    resp = user.http.get(TRACES, params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()["traces"]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- what the upstream SDKs send for traces ----------------------------------------------


def test_python_sdk_create_trace_and_traces(server: ServerHandle, new_user: NewUser) -> None:
    """`client.analytics.create_trace(span_name=..., operation_type=..., ...)` posts this body
    (ids are uuid4 strings it makes) and `client.analytics.traces(trace_id=...)` sends
    limit/offset/trace_id; it reads the JSON back as a dict."""
    user = new_user("production")
    trace_id = str(uuid.uuid4())
    root_id, child_id = str(uuid.uuid4()), str(uuid.uuid4())
    bodies = [
        {
            "trace_id": trace_id,
            "span_id": root_id,
            "span_name": "agent.run",
            "operation_type": "agent",
            "conversation_id": "conv-1",
        },
        {
            "trace_id": trace_id,
            "span_id": child_id,
            "span_name": "llm.completion",
            "operation_type": "llm_call",
            "conversation_id": "conv-1",
            "model_name": "gpt-4",
            "duration_ms": 245,
            "input_data": {"prompt": "Hello"},
            "output_data": {"response": "Hi there!"},
            "metadata": {"temperature": 0.7},
        },
    ]
    created = []
    for body in bodies:
        resp = user.http.post(TRACES, json=body)
        assert resp.status_code == 201, resp.text
        created.append(resp.json())
    child = created[1]
    assert isinstance(child["id"], int)
    assert (child["trace_id"], child["span_id"], child["span_name"]) == (
        trace_id,
        child_id,
        "llm.completion",
    )
    assert (child["operation"], child["model"], child["latency_ms"]) == ("llm_call", "gpt-4", 245)
    assert child["input"] == {"prompt": "Hello"}
    assert child["output"] == '{"response":"Hi there!"}'  # output is text: the JSON of it
    assert child["metadata"] == {"temperature": 0.7}
    assert child["conversation_id"] == "conv-1" and child["status"] == "success"
    # Every span gets a time window: it ended when it was recorded, `duration_ms` before.
    start, end = parse_time(child["start_time"]), parse_time(child["end_time"])
    assert end - start == timedelta(milliseconds=245)
    # Another trace, which `traces(trace_id=...)` must leave out.
    other = {"span_name": "llm.completion", "operation_type": "llm_call", "model_name": "gpt-4"}
    other_span = user.http.post(TRACES, json={**other, "trace_id": str(uuid.uuid4())}).json()
    resp = user.http.get(TRACES, params={"limit": 50, "offset": 0, "trace_id": trace_id})
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert {t["span_id"] for t in page["traces"]} == {root_id, child_id}
    assert other_span["span_id"] not in {t["span_id"] for t in page["traces"]}
    by_conversation = listed(user, limit=50, offset=0, conversation_id="conv-1")
    assert {t["span_id"] for t in by_conversation} == {root_id, child_id}
    # A span with no ids given starts its own trace, with fresh W3C-shaped ids.
    assert len(other_span["trace_id"]) == 36  # the uuid it was sent
    fresh = user.http.post(TRACES, json={"model": "m"}).json()
    assert len(fresh["trace_id"]) == 32 and len(fresh["span_id"]) == 16
    assert fresh["parent_span_id"] is None


def test_typescript_sdk_create_trace(server: ServerHandle, new_user: NewUser) -> None:
    """`client.analytics.createTrace({...})` sends snake_case fields, start_time always (now
    when not given) and reads `{ id }` back; `traces({ traceId })` sends trace_id."""
    user = new_user("production")
    trace_id, parent_id, span_id = "trace_123", "span_455", "span_456"
    start = datetime(2030, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    body = {
        "trace_id": trace_id,
        "span_id": span_id,
        "span_name": "llm.completion",
        "start_time": start.isoformat().replace("+00:00", "Z"),
        "operation_type": "llm_call",
        "conversation_id": "c-ts",
        "end_time": (start + timedelta(milliseconds=1500)).isoformat(),
        "model_name": "claude-3-sonnet",
        "model_provider": "anthropic",
        "input_tokens": 100,
        "output_tokens": 200,
        "status": "failed",
        "error_message": "rate limited upstream",
        "metadata": {"attempt": 2},
    }
    resp = user.http.post(TRACES, json=body)
    assert resp.status_code == 201, resp.text
    span = resp.json()
    assert isinstance(span["id"], int)
    assert (span["model"], span["provider"]) == ("claude-3-sonnet", "anthropic")
    assert (span["prompt_tokens"], span["completion_tokens"], span["total_tokens"]) == (
        100,
        200,
        300,
    )
    assert (span["status"], span["error"]) == ("error", "rate limited upstream")
    assert span["latency_ms"] == 1500  # from start_time and end_time
    assert parse_time(span["start_time"]) == start == parse_time(span["created_at"])
    # The parent, spelled as the upstream server stores it (`parent_trace_id`).
    resp = user.http.post(
        TRACES,
        json={
            "trace_id": trace_id,
            "span_id": parent_id,
            "span_name": "request",
            "start_time": start.isoformat(),
            "operation_type": "http",
            "status": "completed",
        },
    )
    assert resp.status_code == 201, resp.text
    child = {
        "trace_id": trace_id,
        "span_id": "span_457",
        "parent_trace_id": parent_id,
        "span_name": "tool",
        "operation_type": "tool_call",
    }
    assert user.http.post(TRACES, json=child).json()["parent_span_id"] == parent_id
    spans = {s["span_id"]: s for s in listed(user, trace_id=trace_id)}
    assert set(spans) == {parent_id, span_id, "span_457"}
    assert spans[parent_id]["status"] == "success"
    # The usual filters narrow one trace further: status, model, time range.
    assert [s["span_id"] for s in listed(user, trace_id=trace_id, status="error")] == [span_id]
    assert [s["span_id"] for s in listed(user, trace_id=trace_id, model="claude-3-sonnet")] == [
        span_id
    ]
    in_range = listed(
        user,
        trace_id=trace_id,
        start_date=start.isoformat(),
        end_date=(start + timedelta(seconds=1)).isoformat(),
    )
    assert {s["span_id"] for s in in_range} == {parent_id, span_id}


def test_trace_aliases_stay_strict(server: ServerHandle, new_user: NewUser) -> None:
    user = new_user("production")
    for body in (
        {"model": "a", "model_name": "b"},  # both spellings of one field
        {"model": "a", "latency_ms": 1, "duration_ms": 2},
        {"span_name": "s", "cost_usd": 0.1},  # upstream fields we do not keep: still unknown
        {"span_name": "s", "status": "pending"},  # never sent by the SDKs (CONTRACT)
        {"span_name": "s", "status": "running"},
        {"span_name": "s", "trace_id": "has space"},
        {"span_name": "s", "span_id": "x" * 65},
        {"operation_type": "llm_call"},  # neither a model nor a span name
        {
            "span_name": "s",
            "start_time": "2030-01-01T00:00:01Z",
            "end_time": "2030-01-01T00:00:00Z",
        },
        {"span_name": "s", "output_data": {"bad": float("inf")}},
    ):
        assert_error(user.http.post(TRACES, content=_json(body)), 422)
    for params in ({"trace_id": "x" * 65}, {"conversation_id": "a\x00b"}):
        assert_error(user.http.get(TRACES, params=params), 422)
    assert listed(user) == []


def _json(body: dict) -> bytes:
    """JSON as a client would write it (Infinity included, which httpx refuses to send)."""
    return json.dumps(body).encode()


# --- what the upstream SDKs send for batch tests -----------------------------------------


def test_sdk_batch_run_status_cancel(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    user = new_user("production,testing")
    model = register_remote(user.http, fake_openai.base_url, "echo")
    items = [{"prompt": f"say {i}", "expected": f"SAY {i}"} for i in range(3)]
    suite = user.http.post("/api/test-suites", json={"name": "sdk", "items": items}).json()
    # batch_test.run(model_id, test_suite_id=..., delay_ms=300, name=...) in Python; the
    # TypeScript SDK sends the same keys (its undefined ones are dropped by JSON.stringify).
    config = {
        "model_id": model["id"],
        "prompt_limit": 25,
        "concurrency": 1,
        "delay_ms": 300,
        "test_suite_id": suite["id"],
        "name": "nightly",
    }
    resp = user.http.post("/api/batch-testing/run", json={"config": config})
    assert resp.status_code == 202, resp.text
    started = resp.json()
    test_id = started["test_id"]
    assert test_id == started["test_run_id"] and started["success"] is True
    assert started["status"] == "queued"
    assert started["results"] == {"total_prompts": 3, "successful": 0, "failed": 0}
    status = _wait(user.http, test_id)
    assert status["status"] == "completed"
    assert (status["total_prompts"], status["completed_prompts"], status["failed_prompts"]) == (
        3,
        0 + 3,
        0,
    )
    assert status["test_id"] == test_id and status["config"]["name"] == "nightly"
    # delay_ms is honoured: one lane, 300 ms after each prompt before the next starts.
    results = user.http.get(f"/api/batch-testing/results/{test_id}").json()["results"]
    times = sorted(parse_time(r["created_at"]) for r in results)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.3 for gap in gaps), gaps
    # The run is one trace: each prompt a span of it.
    run_spans = listed(user, test_run_id=test_id)
    assert len(run_spans) == 3 and len({s["trace_id"] for s in run_spans}) == 1
    assert {s["span_id"] for s in listed(user, trace_id=run_spans[0]["trace_id"])} == {
        s["span_id"] for s in run_spans
    }
    # batch_test.cancel(test_id) posts {"test_id": ...}.
    slow = register_remote(user.http, fake_openai.base_url, "slow-400")
    config = {**config, "model_id": slow["id"], "delay_ms": 1000}
    second = user.http.post("/api/batch-testing/run", json={"config": config}).json()
    resp = user.http.post("/api/batch-testing/cancel", json={"test_id": second["test_id"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled" and resp.json()["test_id"] == second["test_id"]
    # Still strict: sources we do not have, both spellings, a negative delay.
    for bad in (
        {**config, "dataset_id": "d1"},
        {**config, "source_path": "/etc/passwd"},
        {**config, "delay_ms": -1},
        {**config, "delay_ms": 600_000},
    ):
        assert_error(user.http.post("/api/batch-testing/run", json={"config": bad}), 422)
    both = {"test_id": second["test_id"], "test_run_id": second["test_id"]}
    assert_error(user.http.post("/api/batch-testing/cancel", json=both), 422)


def _wait(http: httpx.Client, test_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = http.get(f"/api/batch-testing/status/{test_id}").json()
        if status["status"] not in ("queued", "running"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


# --- our own calls are spans -------------------------------------------------------------


def test_predict_joins_the_callers_trace(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    user = new_user("production")
    model = register_remote(user.http, fake_openai.base_url, "echo")
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    chat = {"model": model["name"], "messages": [{"role": "user", "content": "hi"}]}
    traceparent = f"00-{trace_id}-{parent_id}-01"
    for path, stream in (("/v1/chat/completions", False), ("/api/v1/predict", True)):
        resp = user.http.post(
            path, json={**chat, "stream": stream}, headers={"traceparent": traceparent}
        )
        assert resp.status_code == 200, resp.text
        version, answered_trace, span_id, _ = resp.headers["traceresponse"].split("-")
        assert (version, answered_trace) == ("00", trace_id) and span_id != parent_id
    spans = listed(user, trace_id=trace_id)
    assert len(spans) == 2 and {s["parent_span_id"] for s in spans} == {parent_id}
    assert {s["streamed"] for s in spans} == {True, False}
    for span in spans:
        assert span["span_name"] == f"chat {model['name']}"
        assert (span["model"], span["provider"], span["status"]) == (
            model["name"],
            "openai",
            "success",
        )
        assert (span["prompt_tokens"], span["completion_tokens"]) == (7, 3)
        start, end = parse_time(span["start_time"]), parse_time(span["end_time"])
        assert start <= end and start == parse_time(span["created_at"])
        assert abs((end - start).total_seconds() * 1000 - span["latency_ms"]) < 1
    # No traceparent, or one that is not valid: a new trace, a root span.
    for headers in (
        {},
        {"traceparent": "00-xyz-abc-01"},
        {"traceparent": f"00-{'0' * 32}-{parent_id}-01"},
    ):
        resp = user.http.post("/v1/chat/completions", json=chat, headers=headers)
        assert resp.status_code == 200, resp.text
        _, new_trace, new_span, _ = resp.headers["traceresponse"].split("-")
        assert new_trace != trace_id
        [span] = listed(user, trace_id=new_trace)
        assert (span["span_id"], span["parent_span_id"]) == (new_span, None)
    # A refused call is a span of the caller's trace too.
    resp = user.http.post(
        "/v1/chat/completions", json={"model": model["name"]}, headers={"traceparent": traceparent}
    )
    assert_error(resp, 422)
    assert resp.headers["traceresponse"].split("-")[1] == trace_id
    errors = listed(user, trace_id=trace_id, status="error")
    assert len(errors) == 1 and errors[0]["parent_span_id"] == parent_id


def test_sdk_trace_filters(server: ServerHandle, new_user: NewUser) -> None:
    """Our SDK's typed filters: `traces(trace_id=..., conversation_id=...)` and iter_traces."""
    from finetune_lab import FinetuneLabClient

    user = new_user("production")
    trace_id = uuid.uuid4().hex
    for i in range(3):
        body = {"trace_id": trace_id, "span_name": f"step {i}", "conversation_id": f"c{i % 2}"}
        assert user.http.post(TRACES, json=body).status_code == 201
    assert user.http.post(TRACES, json={"span_name": "elsewhere"}).status_code == 201
    with FinetuneLabClient(api_key=user.key, base_url=server.base_url) as client:
        page = client.analytics.traces(trace_id=trace_id)
        assert sorted(t.span_name or "" for t in page.traces) == ["step 0", "step 1", "step 2"]
        assert {t.trace_id for t in page.traces} == {trace_id}
        both = client.analytics.traces(trace_id=trace_id, conversation_id="c0")
        assert sorted(t.span_name or "" for t in both.traces) == ["step 0", "step 2"]
        every = list(client.analytics.iter_traces(page_size=1, trace_id=trace_id))
        assert len(every) == 3 and len({t.span_id for t in every}) == 3


# --- upstream `analytics.data`: camelCase query parameters ----------------------------------


def test_upstream_analytics_data_date_range(server: ServerHandle, new_user: NewUser) -> None:
    """`analytics.data(start_date=..., end_date=..., granularity=...)` (Python) and
    `analytics.data({ startDate, endDate, granularity })` (TypeScript) both send the query
    `startDate`/`endDate`/`granularity`: the range they ask for is the range counted."""
    user = new_user("production")
    day = datetime(2030, 3, 1, 9, 0, tzinfo=timezone.utc)
    for hours, ms in ((0, 100), (30, 300)):  # one span on 1 March, one on 2 March
        start = (day + timedelta(hours=hours)).isoformat()
        body = {"span_name": "llm", "model": "m", "start_time": start, "duration_ms": ms}
        assert user.http.post(TRACES, json=body).status_code == 201
    upstream = {"granularity": "day", "startDate": "2030-03-01", "endDate": "2030-03-02"}
    resp = user.http.get(DATA, params=upstream)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert parse_time(data["start_date"]) == datetime(2030, 3, 1, tzinfo=timezone.utc)
    assert parse_time(data["end_date"]) == datetime(2030, 3, 3, tzinfo=timezone.utc)
    assert data["totals"]["request_count"] == 2 and data["totals"]["avg_latency_ms"] == 200
    assert [b["request_count"] for b in data["buckets"]] == [1, 1]
    # The same answer as our own spelling; one end only narrows as it does there.
    ours = user.http.get(DATA, params={"start_date": "2030-03-01", "end_date": "2030-03-02"})
    assert ours.json()["totals"] == data["totals"]
    only_second = user.http.get(DATA, params={"startDate": "2030-03-02", "endDate": "2030-03-02"})
    assert only_second.json()["totals"]["request_count"] == 1
    # Both spellings of one parameter: which is meant? 422, whatever the values.
    for params in (
        {"start_date": "2030-03-01", "startDate": "2030-03-01"},
        {"end_date": "2030-03-02", "endDate": "2030-03-01", "startDate": "2030-03-01"},
    ):
        assert_error(user.http.get(DATA, params=params), 422)
    assert_error(user.http.get(DATA, params={"startDate": "March"}), 422)


# --- re-posting a span replaces it (the upstream server upserts on span_id) ----------------


def test_reposted_span_replaces_the_stored_one(server: ServerHandle, new_user: NewUser) -> None:
    """The TypeScript `createTrace` of a span as it starts, then again when it ends (same
    traceId/spanId): one span, the second version; `{ id }` is the same both times."""
    user, other = new_user("production"), new_user("production")
    start = datetime(2030, 4, 1, 8, 0, tzinfo=timezone.utc)
    first = {
        "trace_id": "trace_upsert",
        "span_id": "span_1",
        "span_name": "llm.completion",
        "start_time": start.isoformat(),
        "operation_type": "llm_call",
        "model_name": "gpt-4",
        "metadata": {"phase": "started"},
    }
    done = {
        **{k: v for k, v in first.items() if k != "metadata"},
        "end_time": (start + timedelta(milliseconds=800)).isoformat(),
        "input_tokens": 10,
        "output_tokens": 5,
        "status": "failed",
        "error_message": "timeout",
    }
    a = user.http.post(TRACES, json=first)
    b = user.http.post(TRACES, json=done)
    assert (a.status_code, b.status_code) == (201, 201), b.text
    assert a.json()["id"] == b.json()["id"]
    spans = listed(user, trace_id="trace_upsert")
    assert len(spans) == 1
    span = spans[0]
    assert (span["status"], span["error"], span["total_tokens"]) == ("error", "timeout", 15)
    assert span["latency_ms"] == 800 and span["metadata"] is None  # replaced, not merged
    totals = user.http.get(DATA, params={"startDate": "2030-04-01", "endDate": "2030-04-01"})
    assert totals.json()["totals"]["request_count"] == 1
    # Another user's span with the same ids is theirs; the same span id in another trace and
    # spans without explicit ids are new rows.
    assert other.http.post(TRACES, json=first).json()["id"] != a.json()["id"]
    assert listed(user, trace_id="trace_upsert")[0]["status"] == "error"
    elsewhere = user.http.post(TRACES, json={**first, "trace_id": "trace_other"})
    assert elsewhere.json()["id"] != a.json()["id"]
    no_ids = {"span_name": "s", "model": "m"}
    assert (
        user.http.post(TRACES, json=no_ids).json()["id"]
        != (user.http.post(TRACES, json=no_ids).json()["id"])
    )
    # A refused re-post leaves the stored span as it was.
    assert_error(user.http.post(TRACES, json={**done, "cost_usd": 1}), 422)
    assert listed(user, trace_id="trace_upsert") == spans


def test_concurrent_posts_of_one_span_store_one_row(
    server: ServerHandle, new_user: NewUser
) -> None:
    user = new_user("production")
    body = {"trace_id": "trace_race", "span_id": "span_race", "span_name": "s", "model": "m"}

    def post(i: int) -> int:
        resp = user.http.post(TRACES, json={**body, "metadata": {"i": i}})
        assert resp.status_code == 201, resp.text
        return int(resp.json()["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(post, range(16)))
    assert len(ids) == 1
    assert len(listed(user, trace_id="trace_race")) == 1
