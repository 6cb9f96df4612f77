"""Batch testing against a live server: suites, runs that complete with scores, cancellation,
bad input, and isolation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI
from server._helpers import assert_error

from ._tiny import FACTS
from .conftest import NewUser, register_local, register_remote

WRONG = {"capital of Japan?": "Kyoto"}  # an item whose expected answer the model won't give


def suite_items() -> list[dict]:
    items: list[dict] = [{"prompt": q, "expected": WRONG.get(q, a)} for q, a in FACTS.items()]
    items.append({"messages": [{"role": "user", "content": "two plus two?"}], "expected": "four"})
    items.append({"prompt": "first letter?"})  # no expected answer: not scored
    return items


def wait_for(http: httpx.Client, run_id: str, statuses: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = http.get(f"/api/batch-testing/status/{run_id}").json()
        if status["status"] in statuses:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def start_run(http: httpx.Client, **config: object) -> dict:
    resp = http.post("/api/batch-testing/run", json={"config": config})
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_run_completes_with_scores(
    server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path
) -> None:
    user = new_user("production,testing")
    model = register_local(user.http, tiny_checkpoint)
    resp = user.http.post("/api/test-suites", json={"name": "facts", "items": suite_items()})
    assert resp.status_code == 201, resp.text
    suite = resp.json()
    assert suite["item_count"] == len(FACTS) + 2
    started = start_run(user.http, model_id=model["id"], test_suite_id=suite["id"], concurrency=3)
    assert started["status"] == "queued" and started["total_prompts"] == len(FACTS) + 2
    status = wait_for(user.http, started["test_run_id"], {"completed", "failed"})
    assert status["status"] == "completed", status
    assert (status["completed_prompts"], status["failed_prompts"]) == (len(FACTS) + 2, 0)
    assert status["progress"] == 1.0 and status["finished_at"] is not None
    results = user.http.get(f"/api/batch-testing/results/{started['test_run_id']}").json()
    assert results["status"] == "completed" and results["total"] == len(FACTS) + 2
    rows = results["results"]
    assert [r["index"] for r in rows] == list(range(len(FACTS) + 2))
    for row, item in zip(rows, suite_items(), strict=True):
        question = item.get("prompt") or item["messages"][0]["content"]
        assert row["response"] == FACTS[question]
        assert row["finish_reason"] == "stop" and row["completion_tokens"] > 0
        if item.get("expected") is None:
            assert row["exact_match"] is None and row["char_error_rate"] is None
        elif question in WRONG:
            assert row["exact_match"] == 0.0 and 0 < row["char_error_rate"] <= 1
        else:
            assert row["exact_match"] == 1.0 and row["char_error_rate"] == 0.0
    summary = results["summary"]
    assert summary["scored"] == len(FACTS) + 1
    assert summary["avg_exact_match"] == len(FACTS) / (len(FACTS) + 1)
    # Every prompt was a model call: traced under the run, owned by the user.
    traces = user.http.get(
        "/api/analytics/traces", params={"test_run_id": started["test_run_id"], "limit": 100}
    ).json()["traces"]
    assert len(traces) == len(FACTS) + 2
    assert {t["operation"] for t in traces} == {"batch_test"}
    # A limit takes the first prompts only.
    limited = start_run(
        user.http, model_id=model["name"], test_suite_id=suite["id"], prompt_limit=2
    )
    assert limited["total_prompts"] == 2
    done = wait_for(user.http, limited["test_run_id"], {"completed", "failed"})
    assert done["completed_prompts"] == 2


def test_upload_jsonl_and_json(server: ServerHandle, new_user: NewUser) -> None:
    http = new_user("testing").http
    lines = [
        {"prompt": "a", "completion": "b"},
        {"input": "c", "output": "d"},
        {"messages": [{"role": "user", "content": "e"}, {"role": "assistant", "content": "f"}]},
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    resp = http.post("/api/test-suites/upload", params={"name": "up"}, content=body)
    assert resp.status_code == 201, resp.text
    suite = http.get(f"/api/test-suites/{resp.json()['id']}").json()
    assert [(i["prompt"], i["messages"], i["expected"]) for i in suite["items"]] == [
        ("a", None, "b"),
        ("c", None, "d"),
        (None, [{"role": "user", "content": "e"}], "f"),
    ]
    as_json = http.post(
        "/api/test-suites/upload", params={"name": "j"}, content=json.dumps(lines).encode()
    )
    assert as_json.status_code == 201 and as_json.json()["item_count"] == 3
    assert_error(http.post("/api/test-suites/upload", params={"name": "x"}, content=b"{bad\n"), 400)
    assert_error(http.post("/api/test-suites/upload", params={"name": "x"}, content=b""), 422)
    assert_error(
        http.post(
            "/api/test-suites/upload", params={"name": "x"}, content=b'[{"expected": "no prompt"}]'
        ),
        422,
    )
    listed = http.get("/api/test-suites").json()["test_suites"]
    assert {s["name"] for s in listed} == {"up", "j"}


def test_cancel_stops_new_prompts(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    user = new_user("production,testing")
    slow = register_remote(user.http, fake_openai.base_url, "slow-150")
    items = [{"prompt": f"p{i}", "expected": f"P{i}"} for i in range(40)]
    suite = user.http.post("/api/test-suites", json={"name": "slow", "items": items}).json()
    started = start_run(user.http, model_id=slow["id"], test_suite_id=suite["id"], concurrency=2)
    run_id = started["test_run_id"]
    status = wait_for(user.http, run_id, {"running"})
    deadline = time.monotonic() + 30
    while status["completed_prompts"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        status = user.http.get(f"/api/batch-testing/status/{run_id}").json()
    resp = user.http.post("/api/batch-testing/cancel", json={"test_run_id": run_id})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "cancelled"
    time.sleep(1.0)  # in-flight prompts (at most `concurrency`) may still land, no new ones
    settled = user.http.get(f"/api/batch-testing/status/{run_id}").json()
    time.sleep(0.6)
    final = user.http.get(f"/api/batch-testing/status/{run_id}").json()
    assert final["status"] == "cancelled"
    assert final["completed_prompts"] == settled["completed_prompts"] < 40
    results = user.http.get(f"/api/batch-testing/results/{run_id}").json()["results"]
    assert all(r["exact_match"] == 1.0 for r in results)  # the fake echoes upper-case
    assert_error(user.http.post("/api/batch-testing/cancel", json={"test_run_id": run_id}), 409)


def test_bad_input_scopes_and_isolation(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    alice, bob = new_user("production,testing"), new_user("production,testing")
    model = register_remote(alice.http, fake_openai.base_url, "echo")
    suite = alice.http.post(
        "/api/test-suites", json={"name": "s", "items": [{"prompt": "x", "expected": "X"}]}
    ).json()
    good = {"model_id": model["id"], "test_suite_id": suite["id"]}
    for config, status in (
        ({**good, "test_suite_id": "ts_nope"}, 404),
        ({**good, "model_id": "mdl_nope"}, 404),
        ({**good, "concurrency": 0}, 422),
        ({**good, "concurrency": 1000}, 422),
        ({**good, "prompt_limit": 0}, 422),
        ({**good, "surprise": True}, 422),
        ({"model_id": model["id"]}, 422),
    ):
        assert_error(alice.http.post("/api/batch-testing/run", json={"config": config}), status)
    assert_error(alice.http.post("/api/batch-testing/run", json=good), 422)  # no `config`
    for body in (
        {"name": "e", "items": []},
        {"name": "e", "items": [{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}]},
        {"items": [{"prompt": "a"}]},
    ):
        assert_error(alice.http.post("/api/test-suites", json=body), 422)
    run = start_run(alice.http, **good)
    wait_for(alice.http, run["test_run_id"], {"completed"})
    # Bob sees none of it; his own run cannot use Alice's model or suite.
    for path in (
        f"/api/batch-testing/status/{run['test_run_id']}",
        f"/api/batch-testing/results/{run['test_run_id']}",
        f"/api/test-suites/{suite['id']}",
    ):
        assert_error(bob.http.get(path), 404)
    assert_error(
        bob.http.post("/api/batch-testing/cancel", json={"test_run_id": run["test_run_id"]}), 404
    )
    assert_error(bob.http.post("/api/batch-testing/run", json={"config": good}), 404)
    assert bob.http.get("/api/batch-testing/runs").json() == {"test_runs": []}
    # `testing` is needed for batch tests, `production` for models and predict.
    producer, tester = new_user("production"), new_user("testing")
    assert_error(producer.http.get("/api/test-suites"), 403)
    assert_error(producer.http.post("/api/batch-testing/run", json={"config": good}), 403)
    assert_error(tester.http.get("/api/models"), 403)
