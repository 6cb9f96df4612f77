"""Serving joined to training (issue 16, item 4): a registered checkpoint names the job and step
it came from, its calls' spans carry them, and the job's serving stats come from those spans;
only the owner ever sees any of it."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI
from finetune_lab import AsyncFinetuneLabClient, FinetuneLabClient
from server._helpers import assert_error

from ._tiny import FACTS
from .conftest import NewUser

PRED = "/api/training/predictions"


def make_job(http: httpx.Client, steps: tuple[int, ...] = (100, 200)) -> str:
    job_id = f"t-{uuid.uuid4().hex}"
    resp = http.post("/api/training/jobs", json={"id": job_id, "model_name": "tiny"})
    assert resp.status_code == 201, resp.text
    for epoch, step in enumerate(steps, start=1):
        rows = [{"epoch": epoch, "step": step, "sample_index": 0, "prompt": "q", "prediction": "a"}]
        resp = http.post(f"{PRED}/{job_id}", json={"predictions": rows})
        assert resp.status_code == 200, resp.text
    return job_id


def register(http: httpx.Client, **body: object) -> httpx.Response:
    return http.post("/api/models", json={"name": f"ckpt-{uuid.uuid4().hex[:8]}", **body})


def chat(model: str, question: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": question}], "temperature": 0}


def test_checkpoint_calls_are_the_jobs_serving_stats(
    server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path, fake_openai: FakeOpenAI
) -> None:
    user = new_user()
    job_id = make_job(user.http)
    local = register(user.http, kind="local", path=str(tiny_checkpoint), job_id=job_id, step=100)
    assert local.status_code == 201, local.text
    local_model = local.json()
    assert (local_model["job_id"], local_model["step"]) == (job_id, 100)
    # The same run served elsewhere (an OpenAI-compatible server) at a later step: it fails.
    remote = register(
        user.http,
        kind="openai",
        base_url=fake_openai.base_url,
        upstream_model="fail-500",
        job_id=job_id,
        step=200,
    )
    assert remote.status_code == 201, remote.text
    unrelated = register(user.http, kind="local", path=str(tiny_checkpoint))
    assert unrelated.status_code == 201 and unrelated.json()["job_id"] is None

    usage = []
    for question in list(FACTS)[:2]:
        resp = user.http.post("/api/v1/predict", json=chat(local_model["name"], question))
        assert resp.status_code == 200, resp.text
        usage.append(resp.json()["usage"])
    failed = user.http.post("/v1/chat/completions", json=chat(remote.json()["name"], "hi"))
    assert failed.status_code >= 500, failed.text
    assert user.http.post("/api/v1/predict", json=chat(unrelated.json()["name"], "hi")).is_success

    # Each span of a call to a checkpoint carries its job and step; the others carry none.
    spans = user.http.get("/api/analytics/traces", params={"limit": 100}).json()["traces"]
    assert len(spans) == 4
    by_model = {(s["model"], s["job_id"], s["step"], s["status"]) for s in spans}
    assert by_model == {
        (local_model["name"], job_id, 100, "success"),
        (remote.json()["name"], job_id, 200, "error"),
        (unrelated.json()["name"], None, None, "success"),
    }
    assert user.http.get(f"/api/models/{local_model['id']}").json()["step"] == 100

    resp = user.http.get(f"/api/analytics/jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    serving = resp.json()
    totals = serving["totals"]
    assert (totals["request_count"], totals["error_count"]) == (3, 1)
    assert abs(totals["error_rate"] - 1 / 3) < 1e-9
    assert totals["total_tokens"] == sum(u["total_tokens"] for u in usage)
    assert totals["latency_p95_ms"] > 0
    steps = [(c["step"], c["model"], c["request_count"]) for c in serving["checkpoints"]]
    assert steps == [(100, local_model["name"], 2), (200, remote.json()["name"], 1)]
    assert serving["checkpoints"][0]["prompt_tokens"] == sum(u["prompt_tokens"] for u in usage)
    assert serving["checkpoints"][1]["error_rate"] == 1.0

    # The Python SDK reads the same answer.
    with FinetuneLabClient(api_key=user.key, base_url=server.base_url) as client:
        typed = client.analytics.job_serving(job_id)
    assert typed.totals.request_count == 3
    assert [(c.step, c.request_count) for c in typed.checkpoints] == [(100, 2), (200, 1)]


def test_a_job_without_served_checkpoints_has_zero_stats(
    server: ServerHandle, new_user: NewUser
) -> None:
    user = new_user()
    job_id = make_job(user.http)
    serving = user.http.get(f"/api/analytics/jobs/{job_id}").json()
    assert serving["checkpoints"] == []
    assert serving["totals"]["request_count"] == 0 and serving["totals"]["error_rate"] is None


def test_another_users_job_and_checkpoint_never_appear(
    server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path
) -> None:
    alice, bob = new_user(), new_user()
    job_id = make_job(alice.http)
    model = register(alice.http, kind="local", path=str(tiny_checkpoint), job_id=job_id, step=100)
    assert model.status_code == 201, model.text
    called = alice.http.post("/api/v1/predict", json=chat(model.json()["name"], "two plus two?"))
    assert called.status_code == 200, called.text

    # Bob cannot name Alice's job: refused exactly as a job that does not exist.
    claimed = register(bob.http, kind="local", path=str(tiny_checkpoint), job_id=job_id, step=100)
    missing = register(bob.http, kind="local", path=str(tiny_checkpoint), job_id="t-nope")
    assert_error(claimed, 422, "validation_error")
    assert_error(missing, 422, "validation_error")
    assert claimed.json()["error"]["message"].replace(job_id, "X") == missing.json()["error"][
        "message"
    ].replace("t-nope", "X")
    assert bob.http.get("/api/models").json()["models"] == []
    # Nor see its serving stats, its model, or its spans.
    assert_error(bob.http.get(f"/api/analytics/jobs/{job_id}"), 404)
    assert_error(bob.http.get(f"/api/models/{model.json()['id']}"), 404)
    assert bob.http.get("/api/analytics/traces").json()["traces"] == []
    assert alice.http.get(f"/api/analytics/jobs/{job_id}").json()["totals"]["request_count"] == 1


def test_bad_checkpoint_fields_are_422(server: ServerHandle, new_user: NewUser) -> None:
    user = new_user()
    job_id = make_job(user.http)
    cases: list[dict[str, object]] = [
        {"step": 100},  # a step names a round of a job
        {"job_id": job_id, "step": -1},
        {"job_id": "has space"},
        {"job_id": job_id, "step": "late"},
    ]
    for extra in cases:
        resp = register(user.http, kind="openai", base_url="http://127.0.0.1:9/v1", **extra)
        assert_error(resp, 422, "validation_error")
    assert user.http.get("/api/models").json()["models"] == []
    assert_error(user.http.get("/api/analytics/jobs/t-unknown"), 404)
    assert_error(user.http.get("/api/analytics/jobs/bad%20id"), 404)


def test_batch_prompts_to_a_checkpoint_count_for_its_job(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    user = new_user()
    job_id = make_job(user.http)
    model = register(
        user.http,
        kind="openai",
        base_url=fake_openai.base_url,
        upstream_model="echo",
        job_id=job_id,
        step=200,
    )
    assert model.status_code == 201, model.text
    items = [{"prompt": f"q{i}", "expected": f"Q{i}"} for i in range(3)]
    suite = user.http.post("/api/test-suites", json={"name": "s", "items": items}).json()
    config = {"model_id": model.json()["id"], "test_suite_id": suite["id"]}
    started = user.http.post("/api/batch-testing/run", json={"config": config})
    assert started.status_code == 202, started.text
    run_id = started.json()["test_run_id"]
    deadline = time.monotonic() + 60
    while user.http.get(f"/api/batch-testing/status/{run_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    spans = user.http.get("/api/analytics/traces", params={"test_run_id": run_id}).json()
    assert [(s["job_id"], s["step"]) for s in spans["traces"]] == [(job_id, 200)] * 3
    serving = user.http.get(f"/api/analytics/jobs/{job_id}").json()
    assert serving["totals"]["request_count"] == 3
    assert serving["checkpoints"][0]["step"] == 200


def _job_spans(http: httpx.Client, job_id: str, **params: str | int | None) -> httpx.Response:
    return http.get("/api/analytics/traces", params={"job_id": job_id, **params})


def test_spans_filter_by_job_and_only_ever_the_callers_own(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    alice, bob = new_user(), new_user()
    jobs = {name: make_job(user.http) for name, user in (("alice", alice), ("bob", bob))}
    names = {}
    for name, user, step in (("early", alice, 100), ("late", alice, 200), ("bob", bob, 100)):
        owner = "bob" if name == "bob" else "alice"
        resp = register(
            user.http,
            kind="openai",
            base_url=fake_openai.base_url,
            upstream_model="echo",
            job_id=jobs[owner],
            step=step,
        )
        assert resp.status_code == 201, resp.text
        names[name] = resp.json()["name"]
    plain = register(
        alice.http, kind="openai", base_url=fake_openai.base_url, upstream_model="echo"
    )
    for user, model in ((alice, names["early"]), (alice, names["late"]), (bob, names["bob"])):
        assert user.http.post("/api/v1/predict", json=chat(model, "hi")).status_code == 200
    assert alice.http.post("/api/v1/predict", json=chat(plain.json()["name"], "hi")).is_success

    # Alice's job: the spans of her two checkpoints, newest first, and nothing else.
    resp = _job_spans(alice.http, jobs["alice"])
    assert resp.status_code == 200, resp.text
    mine = resp.json()["traces"]
    assert [(s["model"], s["job_id"], s["step"]) for s in mine] == [
        (names["late"], jobs["alice"], 200),
        (names["early"], jobs["alice"], 100),
    ]
    first = _job_spans(alice.http, jobs["alice"], limit=1).json()
    second = _job_spans(alice.http, jobs["alice"], limit=1, cursor=first["next_cursor"]).json()
    assert [s["id"] for s in first["traces"] + second["traces"]] == [s["id"] for s in mine]
    assert second["next_cursor"] is None

    # Another user's job id finds nothing, answered exactly as an id nobody has: 200, empty.
    theirs = _job_spans(alice.http, jobs["bob"])
    nobody = _job_spans(alice.http, "t-nobody")
    assert theirs.status_code == nobody.status_code == 200
    assert theirs.json() == nobody.json() == {"traces": [], "next_cursor": None}
    assert _job_spans(bob.http, jobs["alice"]).json()["traces"] == []
    assert [s["model"] for s in _job_spans(bob.http, jobs["bob"]).json()["traces"]] == [
        names["bob"]
    ]

    # Bad values are a 422, like the other filters'.
    assert_error(_job_spans(alice.http, "a\x00b"), 422, "validation_error")
    assert_error(_job_spans(alice.http, "j" * 129), 422, "validation_error")

    # The SDK passes it through, page and walk, sync and async.
    with FinetuneLabClient(api_key=alice.key, base_url=server.base_url) as client:
        page = client.analytics.traces(job_id=jobs["alice"])
        walked = list(client.analytics.iter_traces(job_id=jobs["alice"], page_size=1))
        assert client.analytics.traces(job_id=jobs["bob"]).traces == []
    assert [t.id for t in page.traces] == [t.id for t in walked] == [s["id"] for s in mine]

    async def walk_async() -> list[int]:
        async with AsyncFinetuneLabClient(api_key=alice.key, base_url=server.base_url) as aclient:
            assert (await aclient.analytics.traces(job_id=jobs["bob"])).traces == []
            return [t.id async for t in aclient.analytics.iter_traces(job_id=jobs["alice"])]

    assert asyncio.run(walk_async()) == [s["id"] for s in mine]
