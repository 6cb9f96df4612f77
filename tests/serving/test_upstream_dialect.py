"""The upstream TypeScript SDK (finetune-lab-sdk 0.6, `packages/finetune-lab-sdk`) reads our
answers unchanged: each test sends exactly the request one of its methods sends (method, path,
its headers, its JSON.stringify body) and checks every field its code reads, against what
was stored; the same request from our own SDKs gets today's shape. Its `User-Agent` is all
that tells it apart, so every answer on those paths says `Vary: User-Agent`."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI
from server._helpers import assert_error, create_job, ingest, row

from .conftest import NewUser, register_remote

TRACES = "/api/analytics/traces"
DATA = "/api/analytics/data"
UPSTREAM_UA = "finetune-lab-sdk/0.5.1"  # what its client.ts sends (package version 0.6.0)
OURS = ("finetune-lab-node/0.1.0", "finetune-lab-python/0.1.0")

SPAN_KEYS = {  # their `Trace` (types.ts) less the fields we have no value for
    "id",
    "userId",
    "conversationId",
    "traceId",
    "parentTraceId",
    "spanId",
    "spanName",
    "startTime",
    "endTime",
    "durationMs",
    "operationType",
    "modelName",
    "modelProvider",
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "status",
    "errorMessage",
    "createdAt",
}
REQUIRED_SPAN_KEYS = {"id", "userId", "traceId", "spanId", "spanName", "startTime", "createdAt"}


def sdk_call(
    server: ServerHandle,
    key: str,
    method: str,
    path: str,
    body: Any = None,
    user_agent: str = UPSTREAM_UA,
) -> httpx.Response:
    """`FinetuneLabClient.request`: these three headers, the body as JSON.stringify writes it
    (no spaces; undefined members already dropped by the caller), none on a GET."""
    headers = {"X-API-Key": key, "Content-Type": "application/json", "User-Agent": user_agent}
    content = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        return client.request(method, path, headers=headers, content=content)


def answer(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text[:2000]
    assert_varies(resp)
    return resp.json()


def assert_varies(resp: httpx.Response) -> None:
    vary = {v.strip().lower() for v in resp.headers.get("vary", "").split(",")}
    assert "user-agent" in vary, resp.headers


def iso(at: datetime) -> str:
    """`new Date().toISOString()`: milliseconds and Z."""
    return (
        at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{at.microsecond // 1000:03d}Z"
    )


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def whoami(server: ServerHandle, key: str) -> str:
    with server.client(key) as client:
        return str(client.get("/api/auth/whoami").json()["user"])


# --- analytics.createTrace / analytics.traces --------------------------------------------


def create_trace_body(trace: dict[str, Any]) -> dict[str, Any]:
    """`analytics.createTrace(trace)`: ids and start time always, the rest when given."""
    payload = {
        "trace_id": trace.get("traceId") or str(uuid.uuid4()),
        "span_id": trace.get("spanId") or str(uuid.uuid4()),
        "span_name": trace["spanName"],
        "start_time": trace.get("startTime") or iso(datetime.now(timezone.utc)),
        "operation_type": trace["operationType"],
    }
    optional = {
        "conversationId": "conversation_id",
        "endTime": "end_time",
        "durationMs": "duration_ms",
        "modelName": "model_name",
        "modelProvider": "model_provider",
        "inputTokens": "input_tokens",
        "outputTokens": "output_tokens",
        "status": "status",
        "errorMessage": "error_message",
        "metadata": "metadata",
    }
    payload.update({wire: trace[name] for name, wire in optional.items() if name in trace})
    return payload


def traces_path(**filters: Any) -> str:
    """`analytics.traces(filters)`: limit, offset, conversation_id, trace_id, when truthy."""
    spelled = {
        "limit": "limit",
        "offset": "offset",
        "conversationId": "conversation_id",
        "traceId": "trace_id",
    }
    query = {wire: str(filters[name]) for name, wire in spelled.items() if filters.get(name)}
    return f"{TRACES}?{httpx.QueryParams(query)}" if query else TRACES


def test_create_trace_and_traces(server: ServerHandle, new_user: NewUser) -> None:
    user = new_user("production")
    trace_id = str(uuid.uuid4())
    start = datetime(2031, 5, 4, 9, 30, 0, 250_000, tzinfo=timezone.utc)
    sent: list[dict[str, Any]] = [
        {"traceId": trace_id, "spanName": "agent.run", "operationType": "agent",
         "startTime": iso(start), "conversationId": "conv-ts", "durationMs": 900},
        {"traceId": trace_id, "spanName": "llm.completion", "operationType": "llm_call",
         "startTime": iso(start + timedelta(milliseconds=100)), "conversationId": "conv-ts",
         "endTime": iso(start + timedelta(milliseconds=700)), "modelName": "gpt-4",
         "modelProvider": "openai", "inputTokens": 120, "outputTokens": 30,
         "status": "completed", "metadata": {"attempt": 1}},
        {"traceId": trace_id, "spanName": "tool.search", "operationType": "tool_call",
         "startTime": iso(start + timedelta(milliseconds=710)), "durationMs": 150,
         "status": "failed", "errorMessage": "search backend down"},
    ]  # fmt: skip
    ids = []
    for trace in sent:
        created = answer(sdk_call(server, user.key, "POST", TRACES, create_trace_body(trace)), 201)
        assert isinstance(created["id"], str) and created["id"]  # it reads `{ id: string }`
        assert created["spanName"] == trace["spanName"] and created["traceId"] == trace_id
        ids.append(created["id"])
    # Another trace, which the trace filter leaves out.
    other = {"spanName": "x", "operationType": "llm_call", "modelName": "m"}
    answer(sdk_call(server, user.key, "POST", TRACES, create_trace_body(other)), 201)

    # What we stored, read the way our SDKs read it.
    ours = answer(sdk_call(server, user.key, "GET", traces_path(traceId=trace_id), None, OURS[0]))
    assert set(ours) == {"traces", "next_cursor"} and len(ours["traces"]) == 3
    stored = {str(t["id"]): t for t in ours["traces"]}
    assert set(stored) == set(ids)

    # traces({ traceId, limit: 2 }) then ({ ..., offset: 2 }): pages with count and hasMore.
    first = answer(sdk_call(server, user.key, "GET", traces_path(traceId=trace_id, limit=2)))
    assert set(first) == {"traces", "count", "hasMore"}
    assert (first["count"], first["hasMore"]) == (2, True) and len(first["traces"]) == 2
    second = sdk_call(server, user.key, "GET", traces_path(traceId=trace_id, limit=2, offset=2))
    second = answer(second)
    assert (second["count"], second["hasMore"]) == (1, False) and len(second["traces"]) == 1
    spans = first["traces"] + second["traces"]
    assert [s["id"] for s in spans] == [str(t["id"]) for t in ours["traces"]]  # same order
    user_name = whoami(server, user.key)
    for span, trace in zip(
        sorted(spans, key=lambda s: s["startTime"]),
        sorted(sent, key=lambda t: t["startTime"]),
        strict=True,
    ):
        mine = stored[span["id"]]
        assert REQUIRED_SPAN_KEYS <= set(span) <= SPAN_KEYS, span
        assert span["userId"] == user_name
        assert (span["traceId"], span["spanName"]) == (trace_id, trace["spanName"])
        assert span["spanId"] == mine["span_id"] and isinstance(span["spanId"], str)
        assert span["operationType"] == trace["operationType"]
        assert span.get("conversationId") == trace.get("conversationId")
        assert parse_time(span["startTime"]) == parse_time(trace["startTime"])
        assert parse_time(span["createdAt"]) == parse_time(mine["created_at"])
        assert parse_time(span["endTime"]) == parse_time(mine["end_time"])
        # durationMs: what it sent, else end - start.
        expected_ms = trace.get("durationMs")
        if expected_ms is None:
            expected_ms = (
                parse_time(trace["endTime"]) - parse_time(trace["startTime"])
            ) / timedelta(milliseconds=1)
        assert span["durationMs"] == expected_ms == mine["latency_ms"]
        assert span.get("modelName") == trace.get("modelName")
        assert span.get("modelProvider") == trace.get("modelProvider")
        assert span.get("inputTokens") == trace.get("inputTokens")
        assert span.get("outputTokens") == trace.get("outputTokens")
        assert span.get("totalTokens") == mine["total_tokens"]
        if "inputTokens" in trace:
            assert span["totalTokens"] == trace["inputTokens"] + trace["outputTokens"]
        # Its status words: completed unless it said failed.
        assert span["status"] == trace.get("status", "completed")
        assert span.get("errorMessage") == trace.get("errorMessage")
        assert "parentTraceId" not in span  # none of these named a parent

    # traces({ conversationId }): the same two spans that named it.
    by_conv = answer(sdk_call(server, user.key, "GET", traces_path(conversationId="conv-ts")))
    assert {s["spanName"] for s in by_conv["traces"]} == {"agent.run", "llm.completion"}
    assert (by_conv["count"], by_conv["hasMore"]) == (2, False)
    # An offset past the end: an empty page.
    empty = answer(sdk_call(server, user.key, "GET", traces_path(traceId=trace_id, offset=3)))
    assert empty == {"traces": [], "count": 0, "hasMore": False}
    far = traces_path(traceId=trace_id, offset=2**63 - 1)  # the largest: still just empty
    assert answer(sdk_call(server, user.key, "GET", far)) == empty

    # Our SDKs (and anyone else) get today's shape: `offset` is ignored, ids are numbers.
    for agent in OURS:
        path = traces_path(traceId=trace_id, limit=2, offset=2)
        page = answer(sdk_call(server, user.key, "GET", path, None, agent))
        assert set(page) == {"traces", "next_cursor"} and page["next_cursor"]
        assert [t["id"] for t in page["traces"]] == [t["id"] for t in ours["traces"][:2]]
        assert all(isinstance(t["id"], int) and "span_name" in t for t in page["traces"])
        body = create_trace_body(other)
        made = answer(sdk_call(server, user.key, "POST", TRACES, body, agent), 201)
        assert isinstance(made["id"], int) and made["span_name"] == "x" and "spanName" not in made
        # Their `offset` stays ignored for us, whatever it holds (as it always was).
        path = traces_path(traceId=trace_id, offset="x")
        assert len(answer(sdk_call(server, user.key, "GET", path, None, agent))["traces"]) == 3

    # Errors keep our JSON error body (and Vary): a bad offset, a limit past ours, no key.
    bad = ("-1", "ten", "1.5", "\u0661", str(2**63))  # (U+0661: a digit, not ASCII)
    for path in [traces_path(offset=o) for o in bad] + [traces_path(limit=5000)]:
        resp = sdk_call(server, user.key, "GET", path)
        assert_error(resp, 422)
        assert_varies(resp)
    resp = sdk_call(server, "flk_not-a-key", "GET", TRACES)
    assert_error(resp, 401)
    assert_varies(resp)
    resp = sdk_call(server, user.key, "POST", TRACES, {"span_name": "x", "cost_usd": 1})
    assert_error(resp, 422)
    assert_varies(resp)


# --- analytics.data -----------------------------------------------------------------------


def test_analytics_data(server: ServerHandle, new_user: NewUser) -> None:
    """`analytics.data({ startDate, endDate, granularity })` reads `data[]` (date,
    requestCount, tokenCount, avgLatencyMs, errorRate) and `summary` (totalRequests,
    totalTokens, avgLatencyMs, errorRate)."""
    user = new_user("production")
    day = datetime(2031, 7, 14, tzinfo=timezone.utc)
    spans = [  # (hours into the first day, tokens in/out, duration, failed)
        (1, (10, 5), 100, False),
        (2, (20, 10), 300, True),
        (5, (7, 3), 200, False),
    ]
    for hour, (prompt, completion), ms, failed in spans:
        trace = {
            "spanName": "llm.completion",
            "operationType": "llm_call",
            "startTime": iso(day + timedelta(hours=hour)),
            "durationMs": ms,
            "modelName": "gpt-4",
            "inputTokens": prompt,
            "outputTokens": completion,
            "status": "failed" if failed else "completed",
        }
        answer(sdk_call(server, user.key, "POST", TRACES, create_trace_body(trace)), 201)

    query = httpx.QueryParams(
        {"startDate": "2031-07-14", "endDate": "2031-07-15", "granularity": "day"}
    )
    theirs = answer(sdk_call(server, user.key, "GET", f"{DATA}?{query}"))
    assert set(theirs) == {"data", "summary"}
    tokens = sum(p + c for _, (p, c), _, _ in spans)
    mean_ms = sum(ms for _, _, ms, _ in spans) / len(spans)
    errors = sum(1 for *_, failed in spans if failed)
    summary = theirs["summary"]
    assert set(summary) == {"totalRequests", "totalTokens", "avgLatencyMs", "errorRate"}
    assert (summary["totalRequests"], summary["totalTokens"]) == (len(spans), tokens)
    assert abs(summary["avgLatencyMs"] - mean_ms) < 1e-6
    assert abs(summary["errorRate"] - errors / len(spans)) < 1e-9
    # Two day buckets (the end date is inclusive): ours, then an empty one with zeros.
    assert len(theirs["data"]) == 2
    first, empty = theirs["data"]
    for point in theirs["data"]:
        assert set(point) == {"date", "requestCount", "tokenCount", "avgLatencyMs", "errorRate"}
        assert isinstance(point["date"], str)
    assert parse_time(first["date"]) == day and parse_time(empty["date"]) == day + timedelta(1)
    assert (first["requestCount"], first["tokenCount"]) == (len(spans), tokens)
    assert abs(first["avgLatencyMs"] - mean_ms) < 1e-6
    assert abs(first["errorRate"] - errors / len(spans)) < 1e-9
    assert empty == {**empty, "requestCount": 0, "tokenCount": 0, "avgLatencyMs": 0, "errorRate": 0}

    # Our SDKs: today's shape, the same numbers.
    for agent in OURS:
        ours = answer(sdk_call(server, user.key, "GET", f"{DATA}?{query}", None, agent))
        assert {"totals", "buckets", "models"} <= set(ours) and "summary" not in ours
        assert ours["totals"]["request_count"] == summary["totalRequests"]
        assert ours["buckets"][1]["avg_latency_ms"] is None  # ours says "no calls" as null
    resp = sdk_call(server, user.key, "GET", f"{DATA}?granularity=minute")
    assert_error(resp, 422)
    assert_varies(resp)


# --- batchTest.run / status / cancel ------------------------------------------------------


RUN_STATUSES = {"pending", "running", "completed", "failed", "cancelled"}
STATUS_KEYS = {"status", "total_prompts", "completed_prompts", "failed_prompts"}


def run_body(model_id: str, suite_id: str, **config: Any) -> dict[str, Any]:
    """`batchTest.run({ modelId, testSuiteId })`: its defaults filled in, undefined dropped."""
    return {
        "config": {
            "model_id": model_id,
            "test_suite_id": suite_id,
            "prompt_limit": config.get("promptLimit", 25),
            "concurrency": config.get("concurrency", 3),
            "delay_ms": config.get("delayMs", 1000),
        }
    }


def status_of(server: ServerHandle, key: str, test_id: str, agent: str = UPSTREAM_UA) -> dict:
    return answer(sdk_call(server, key, "GET", f"/api/batch-testing/status/{test_id}", None, agent))


def wait_done(server: ServerHandle, key: str, test_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(server, key, test_id)
        assert status["status"] in RUN_STATUSES, status
        if status["status"] not in ("pending", "running"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def test_batch_run_status_cancel(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    user = new_user("production,testing")
    echo = register_remote(user.http, fake_openai.base_url, "echo")
    failing = register_remote(user.http, fake_openai.base_url, "fail-400")
    items = [{"prompt": f"say {i}", "expected": f"SAY {i}"} for i in range(3)]
    suite = user.http.post("/api/test-suites", json={"name": "ts", "items": items}).json()

    # run(): testId, status, success, results {totalPrompts, successful, failed}.
    resp = sdk_call(
        server, user.key, "POST", "/api/batch-testing/run", run_body(echo["id"], suite["id"])
    )
    started = answer(resp, 202)
    assert set(started) == {"success", "testId", "status", "results"}
    assert started["success"] is True and isinstance(started["testId"], str)
    assert started["status"] == "pending"  # just queued: their word for it
    assert started["results"] == {"totalPrompts": 3, "successful": 0, "failed": 0}
    # status(testId): the snake_case fields it reads, its status words.
    done = wait_done(server, user.key, started["testId"])
    ours = status_of(server, user.key, started["testId"], OURS[0])
    assert ours["status"] == "completed" and ours["finished_at"]
    assert STATUS_KEYS | {"started_at", "completed_at", "test_id"} == set(done)
    assert done["status"] == "completed" and done["test_id"] == started["testId"]
    assert (done["total_prompts"], done["completed_prompts"], done["failed_prompts"]) == (3, 3, 0)
    assert parse_time(done["started_at"]) == parse_time(ours["started_at"])
    assert parse_time(done["completed_at"]) == parse_time(ours["finished_at"])

    # A run whose prompts all fail: `failed`, failed_prompts, and the error it reads.
    resp = sdk_call(
        server,
        user.key,
        "POST",
        "/api/batch-testing/run",
        run_body(failing["id"], suite["id"], delayMs=0),
    )
    bad = wait_done(server, user.key, answer(resp, 202)["testId"])
    ours = status_of(server, user.key, bad["test_id"], OURS[0])
    assert (bad["status"], bad["failed_prompts"], bad["completed_prompts"]) == ("failed", 3, 0)
    assert bad.get("error") == ours["error"]

    # cancel(testId) posts {test_id} and reads success and message.
    slow = register_remote(user.http, fake_openai.base_url, "slow-400")
    resp = sdk_call(
        server, user.key, "POST", "/api/batch-testing/run", run_body(slow["id"], suite["id"])
    )
    test_id = answer(resp, 202)["testId"]
    resp = sdk_call(server, user.key, "POST", "/api/batch-testing/cancel", {"test_id": test_id})
    cancelled = answer(resp)
    assert cancelled["success"] is True and test_id in cancelled["message"]
    assert (cancelled["testId"], cancelled["status"]) == (test_id, "cancelled")
    assert status_of(server, user.key, test_id)["status"] == "cancelled"
    # Errors keep our body: cancelling it again (409), an unknown run (404).
    resp = sdk_call(server, user.key, "POST", "/api/batch-testing/cancel", {"test_id": test_id})
    assert_error(resp, 409)
    assert_varies(resp)
    resp = sdk_call(server, user.key, "GET", "/api/batch-testing/status/run-nope")
    assert_error(resp, 404)
    assert_varies(resp)

    # Our SDKs: today's shapes.
    for agent in OURS:
        body = run_body(slow["id"], suite["id"])
        ours = answer(
            sdk_call(server, user.key, "POST", "/api/batch-testing/run", body, agent), 202
        )
        assert ours["test_run_id"] == ours["test_id"] and ours["status"] == "queued"
        assert ours["results"] == {"total_prompts": 3, "successful": 0, "failed": 0}
        assert "testId" not in ours
        run_id = ours["test_run_id"]
        status = status_of(server, user.key, run_id, agent)
        assert "completed_at" not in status and "finished_at" in status and "summary" in status
        cancel = {"test_run_id": run_id}
        resp = sdk_call(server, user.key, "POST", "/api/batch-testing/cancel", cancel, agent)
        gone = answer(resp)
        assert gone["status"] == "cancelled" and "message" not in gone and "summary" in gone


# --- trainingPredictions.get / epochs / trends; predict -----------------------------------


def test_training_predictions(server: ServerHandle, new_user: NewUser) -> None:
    """`trainingPredictions.get(jobId, { epoch, limit, offset })` reads its
    `PredictionsResponse` (ids are strings there); epochs() and trends() read our names."""
    user = new_user("training")
    job_id = f"job-ts-{uuid.uuid4().hex[:8]}"
    create_job(user.http, job_id)
    rows = [row(e, 10 * (e + 1), i, prediction=f"p{i}", ground_truth=f"p{i}" if i else "x")
            for e in (0, 1) for i in range(3)]  # fmt: skip
    ingest(user.http, job_id, rows)
    path = f"/api/training/predictions/{job_id}?epoch=1&limit=2&offset=1"
    ours = answer(sdk_call(server, user.key, "GET", path, None, OURS[0]))
    theirs = answer(sdk_call(server, user.key, "GET", path))
    assert (theirs["job_id"], theirs["total_count"], theirs["epoch_count"]) == (job_id, 3, 2)
    assert len(theirs["predictions"]) == 2
    for mine, pred in zip(ours["predictions"], theirs["predictions"], strict=True):
        assert isinstance(mine["id"], int) and pred["id"] == str(mine["id"])
        assert {**pred, "id": mine["id"]} == mine  # every other field as ours
        assert (pred["job_id"], pred["epoch"], pred["step"]) == (job_id, 1, 20)
        source = rows[3 + pred["sample_index"]]
        assert (pred["prompt"], pred["prediction"]) == (source["prompt"], source["prediction"])
        assert pred["ground_truth"] == source["ground_truth"]
        assert pred["exact_match"] == (
            1.0 if source["prediction"] == source["ground_truth"] else 0.0
        )
        for name in ("char_error_rate", "length_ratio", "word_overlap"):
            assert isinstance(pred[name], float)
    assert [p["sample_index"] for p in theirs["predictions"]] == [1, 2]
    # Same names as ours: these answer alike for everyone (so they need no Vary).
    epochs = sdk_call(server, user.key, "GET", f"/api/training/predictions/{job_id}/epochs")
    assert epochs.status_code == 200, epochs.text
    epochs = epochs.json()
    assert epochs["epochs"] == [
        {"epoch": 0, "prediction_count": 3, "latest_step": 10},
        {"epoch": 1, "prediction_count": 3, "latest_step": 20},
    ]
    trends = sdk_call(server, user.key, "GET", f"/api/training/predictions/{job_id}/trends")
    assert trends.status_code == 200, trends.text
    trends = trends.json()
    assert [t["epoch"] for t in trends["trends"]] == [0, 1] and "overall_improvement" in trends
    assert all(t["sample_count"] == 3 for t in trends["trends"])
    resp = sdk_call(server, user.key, "GET", "/api/training/predictions/job-nope")
    assert_error(resp, 404)
    assert_varies(resp)


def upstream_create(
    server: ServerHandle, token: str, body: Any, user_agent: str = UPSTREAM_UA
) -> httpx.Response:
    """Both upstream SDKs' `trainingPredictions.create(jobId, jobToken, predictions)`: the job
    token as Bearer, `{job_id, predictions}` to `/api/training/local/predictions`."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "User-Agent": user_agent,
    }
    with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        return client.post("/api/training/local/predictions", headers=headers, json=body)


def test_training_predictions_create(server: ServerHandle, new_user: NewUser) -> None:
    """Their rows carry `job_id`, `user_id` and their own scores: the owner comes from the job
    token and the scores from ours; the answer is their `{success, count}`. Anything else our
    ingest refuses is still refused, whole."""
    user = new_user("training")
    job_id = f"job-up-{uuid.uuid4().hex[:8]}"
    token = create_job(user.http, job_id)["job_token"]

    def theirs(i: int, **extra: Any) -> dict[str, Any]:
        return {
            "job_id": job_id,
            "user_id": "user_123",
            "epoch": 1,
            "step": 100,
            "sample_index": i,
            "prompt": f"What is {i}+{i}?",
            "prediction": str(2 * i),
            "ground_truth": str(2 * i) if i else "7",
            "exact_match": 0.5,  # theirs: ignored, we score
            "char_error_rate": 9.0,
            "validation_pass": False,
            "latency_ms": 12.5,
            **extra,
        }

    for agent in (UPSTREAM_UA, "finetune-lab-python/0.2.0"):  # the TS and the Python SDK
        resp = upstream_create(
            server, token, {"job_id": job_id, "predictions": [theirs(0), theirs(1)]}, agent
        )
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"success": True, "count": 2}
    stored = user.http.get(f"/api/training/predictions/{job_id}").json()
    assert stored["total_count"] == 2  # the second post re-sent the same rows
    by_index = {p["sample_index"]: p for p in stored["predictions"]}
    assert (by_index[0]["exact_match"], by_index[1]["exact_match"]) == (0.0, 1.0)
    assert by_index[1]["char_error_rate"] == 0.0 and by_index[1]["latency_ms"] == 12.5
    assert by_index[1]["validation_pass"] is None  # no validators on this job

    bad_bodies = [
        {"job_id": job_id, "predictions": [theirs(2), theirs(3, job_id="another")]},
        {"job_id": job_id, "predictions": [theirs(2), theirs(3, surprise=1)]},
        {"job_id": job_id, "predictions": [theirs(2), theirs(3, epoch=-1)]},
        {"job_id": job_id, "predictions": "nope"},
        {"predictions": []},
        [1, 2],
    ]
    for body in bad_bodies:
        assert_error(upstream_create(server, token, body), 422)
    assert user.http.get(f"/api/training/predictions/{job_id}").json()["total_count"] == 2
    other = f"job-up-{uuid.uuid4().hex[:8]}"
    create_job(user.http, other)
    resp = upstream_create(
        server, token, {"job_id": other, "predictions": [theirs(5, job_id=other)]}
    )
    assert_error(resp, 403)  # this job's token, another job
    assert_error(upstream_create(server, "fjt_nope", {"job_id": job_id, "predictions": []}), 401)


def test_predict(server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI) -> None:
    """`predict({ model, messages, temperature, maxTokens })` reads the OpenAI shape we answer
    anyway: no dialect needed."""
    user = new_user("production")
    model = register_remote(user.http, fake_openai.base_url, "echo")
    body = {
        "model": model["name"],
        "messages": [{"role": "user", "content": "Hello!"}],
        "temperature": 0.7,
        "max_tokens": 50,
        "stream": False,
    }
    resp = sdk_call(server, user.key, "POST", "/api/v1/predict", body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["object"] == "chat.completion" and isinstance(out["created"], int)
    assert out["choices"][0]["message"]["role"] == "assistant"
    assert out["choices"][0]["message"]["content"] == "HELLO!"  # the fake echoes, upper-cased
    assert out["usage"]["total_tokens"] == (
        out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
    )
