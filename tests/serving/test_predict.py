"""Predict through a live server: a local checkpoint, the OpenAI-compatible path (also pointed
back at the server itself), streaming, failures; every call traced."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI
from server._helpers import assert_error

from ._tiny import FACTS
from .conftest import NewUser, register_local, register_remote


def chat(model: str, question: str, **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": question}], **extra}


def sse_events(resp: httpx.Response) -> list[str]:
    return [line[6:] for line in resp.text.split("\n") if line.startswith("data: ")]


def traces(http: httpx.Client, **params: object) -> list[dict]:
    resp = http.get("/api/analytics/traces", params={"limit": 1000, **params})
    assert resp.status_code == 200, resp.text
    return resp.json()["traces"]


def test_local_checkpoint_answers_on_both_paths(
    server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path
) -> None:
    user = new_user()
    model = register_local(user.http, tiny_checkpoint)
    for question, answer in FACTS.items():
        for path in ("/api/v1/predict", "/v1/chat/completions"):
            resp = user.http.post(path, json=chat(model["name"], question, temperature=0))
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["object"] == "chat.completion"
            assert body["model"] == model["name"]
            choice = body["choices"][0]
            assert choice["message"] == {"role": "assistant", "content": answer}
            assert choice["finish_reason"] == "stop"
            usage = body["usage"]
            assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # The model can also be named by id; max_tokens cut short → finish_reason "length".
    resp = user.http.post(
        "/api/v1/predict", json=chat(model["id"], "capital of France?", temperature=0, max_tokens=1)
    )
    body = resp.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 1
    assert "Paris".startswith(body["choices"][0]["message"]["content"])
    recorded = traces(user.http)
    assert len(recorded) == 2 * len(FACTS) + 1
    assert {t["status"] for t in recorded} == {"success"}
    assert all(t["model_id"] == model["id"] and t["latency_ms"] > 0 for t in recorded)
    assert recorded[0]["finish_reason"] == "length" and recorded[0]["completion_tokens"] == 1


def test_streaming_chunks_end_with_done(
    server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path
) -> None:
    user = new_user()
    model = register_local(user.http, tiny_checkpoint)
    resp = user.http.post(
        "/v1/chat/completions",
        json=chat(model["name"], "capital of Japan?", temperature=0, stream=True),
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Tokyo"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    (trace,) = traces(user.http)
    assert trace["streamed"] is True and trace["output"] == "Tokyo"
    assert trace["status"] == "success"


def test_openai_path_pointing_back_at_the_server(
    server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path
) -> None:
    """A model registered as an OpenAI endpoint whose URL is this server's own /v1."""
    user = new_user()
    local = register_local(user.http, tiny_checkpoint)
    proxy = register_remote(user.http, f"{server.base_url}/v1", local["name"], api_key=user.key)
    assert proxy["has_api_key"] is True and "api_key" not in proxy
    resp = user.http.post(
        "/api/v1/predict", json=chat(proxy["name"], "two plus two?", temperature=0)
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "four"
    assert resp.json()["usage"]["completion_tokens"] > 0
    stream = user.http.post(
        "/api/v1/predict", json=chat(proxy["name"], "opposite of hot?", temperature=0, stream=True)
    )
    chunks = [json.loads(e) for e in sse_events(stream)[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "cold"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # Each outer call made one inner call to the local model: four traces, two per model.
    by_model = {}
    for t in traces(user.http):
        by_model.setdefault(t["model"], []).append(t)
    assert sorted(by_model) == sorted([local["name"], proxy["name"]])
    assert [len(v) for v in by_model.values()] == [2, 2]


def test_remote_endpoint_gets_the_secret_and_failures_are_traced(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    user = new_user()
    echo = register_remote(user.http, fake_openai.base_url, "echo", api_key="sk-upstream-secret")
    resp = user.http.post("/api/v1/predict", json=chat(echo["name"], "hello there"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "HELLO THERE"
    assert resp.json()["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    sent = fake_openai.requests[-1]
    assert sent["auth"] == "Bearer sk-upstream-secret"
    assert sent["body"]["model"] == "echo" and sent["path"] == "/v1/chat/completions"
    listed = user.http.get("/api/models").text + user.http.get(f"/api/models/{echo['id']}").text
    assert "sk-upstream-secret" not in listed

    broken = register_remote(user.http, fake_openai.base_url, "fail-500")
    assert_error(
        user.http.post("/api/v1/predict", json=chat(broken["name"], "x")), 502, "upstream_error"
    )
    gone = register_remote(user.http, "http://127.0.0.1:9/v1", "nothing")
    assert_error(
        user.http.post("/api/v1/predict", json=chat(gone["name"], "x")), 502, "upstream_unreachable"
    )
    streamed_fail = user.http.post("/api/v1/predict", json=chat(broken["name"], "x", stream=True))
    assert streamed_fail.status_code == 200  # the error comes as an event once streaming began
    events = sse_events(streamed_fail)
    assert json.loads(events[-2])["error"]["type"] == "upstream_error" and events[-1] == "[DONE]"

    errors = traces(user.http, status="error")
    assert [(t["model"], t["status_code"], t["error_type"]) for t in errors] == [
        (broken["name"], 502, "upstream_error"),
        (gone["name"], 502, "upstream_unreachable"),
        (broken["name"], 502, "upstream_error"),
    ]
    assert len(traces(user.http, status="success")) == 1


def test_bad_input_is_4xx_and_traced(server: ServerHandle, new_user: NewUser) -> None:
    user = new_user()
    assert_error(user.http.post("/api/v1/predict", json=chat("no-such-model", "hi")), 404)
    bad = [
        ({"model": "m", "messages": []}, 422),
        ({"model": "m"}, 422),
        ({"messages": [{"role": "user", "content": "hi"}]}, 422),
        (chat("m", "hi", temperature=3), 422),
        (chat("m", "hi", max_tokens=0), 422),
        (chat("m", "hi", n=2), 422),
        ({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}, 422),
        (chat("m", "a\x00b"), 422),
        ([1, 2], 422),
    ]
    for body, status in bad:
        assert_error(user.http.post("/api/v1/predict", json=body), status)
    assert_error(
        user.http.post(
            "/v1/chat/completions", content=b"{nope", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    recorded = traces(user.http)
    assert len(recorded) == 1 + len(bad) + 1
    assert all(t["status"] == "error" for t in recorded)
    assert recorded[-1]["model"] == "no-such-model" and recorded[-1]["status_code"] == 404
    assert recorded[0]["status_code"] == 400


def test_scopes_and_isolation(
    server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path
) -> None:
    alice, bob = new_user(), new_user()
    model = register_local(alice.http, tiny_checkpoint)
    # Bob cannot use, see or delete Alice's model; his failed call is his trace, not hers.
    assert_error(bob.http.post("/api/v1/predict", json=chat(model["name"], "hi")), 404)
    assert_error(bob.http.get(f"/api/models/{model['id']}"), 404)
    assert_error(bob.http.delete(f"/api/models/{model['id']}"), 404)
    assert bob.http.get("/api/models").json() == {"models": []}
    assert traces(alice.http) == []
    assert len(traces(bob.http)) == 1
    trainer = new_user("training")
    for method, path in (
        ("POST", "/api/v1/predict"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/api/models"),
        ("GET", "/api/analytics/traces"),
        ("GET", "/api/analytics/data"),
    ):
        assert_error(trainer.http.request(method, path, json=chat("m", "x")), 403)
    assert_error(httpx.post(f"{server.base_url}/api/v1/predict", json=chat("m", "x")), 401)


def test_model_registry_input(
    server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    http = new_user("production").http
    register_local(http, tiny_checkpoint, name="taken")
    assert_error(
        http.post(
            "/api/models", json={"name": "taken", "kind": "local", "path": str(tiny_checkpoint)}
        ),
        409,
    )
    for body in (
        {"name": "a", "kind": "local", "path": "relative/dir"},
        {"name": "a", "kind": "local", "path": str(tmp_path)},  # no config.json
        {"name": "a", "kind": "local", "path": str(tmp_path / "missing")},
        {"name": "a", "kind": "local"},
        {"name": "a", "kind": "openai"},
        {"name": "a", "kind": "openai", "base_url": "ftp://x"},
        {"name": "a", "kind": "openai", "base_url": "http://x", "path": "/tmp"},
        {"name": "a", "kind": "local", "path": str(tiny_checkpoint), "api_key": "k"},
        {"name": "a", "kind": "rocket"},
        {"name": " padded ", "kind": "openai", "base_url": "http://x"},
        {"name": "a", "kind": "openai", "base_url": "http://x", "device": "tpu"},
    ):
        assert_error(http.post("/api/models", json=body), 422)
    assert [m["name"] for m in http.get("/api/models").json()["models"]] == ["taken"]
    assert_error(http.get("/api/models/mdl_missing"), 404)
    model_id = http.get("/api/models").json()["models"][0]["id"]
    assert http.delete(f"/api/models/{model_id}").json() == {"id": model_id, "deleted": True}
    assert_error(http.post("/api/v1/predict", json=chat("taken", "hi")), 404)
