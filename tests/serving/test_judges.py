"""Judges: model-graded scores, graded after ingest on the run queue, on both backends.

The judge is the fake OpenAI-compatible endpoint (it answers with the prompt upper-cased, so a
template "score: {prediction}" makes the answer's number the row's prediction) or the tiny
local checkpoint through the registry.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.appserver import Backend, ServerHandle
from _support.fake_openai import FakeOpenAI
from _support.infra import MakeServer
from server._helpers import JOBS, PRED, assert_error, create_job, fetch_all, ingest, row
from server._sse import EventReader

from ._tiny import FACTS
from .conftest import NewUser, register_local, register_remote

BACKENDS: list[Backend] = ["sqlite", "postgresql"]
FAST_RETRIES = {"FINETUNE_LAB_JUDGE_BACKOFF_S": "0.05", "FINETUNE_LAB_BATCH_POLL_S": "0.2"}
TEMPLATE = "Grade this answer.\nQ: {prompt}\nscore: {prediction}"


def judge_spec(model: str, name: str = "quality", **extra: Any) -> dict[str, Any]:
    return {"name": name, "model": model, "prompt": TEMPLATE, "min": 0, "max": 10, **extra}


def judge_job(http: httpx.Client, *specs: dict[str, Any]) -> str:
    job_id = f"j-{uuid.uuid4().hex[:12]}"
    create_job(http, job_id, config={"predictions": {"judges": list(specs)}})
    return job_id


def status_of(http: httpx.Client, job_id: str, **params: Any) -> dict[str, Any]:
    resp = http.get(f"{PRED}/{job_id}/judges", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_graded(http: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The judge status once no row is pending for any judge and no run is queued/running."""
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(http, job_id)
        idle = status["runs"]["queued"] == 0 and status["runs"]["running"] == 0
        if idle and all(j["pending"] == 0 for j in status["judges"]):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def by_index(rows: list[dict]) -> dict[int, dict]:
    return {r["sample_index"]: r for r in rows}


def events_of(reader: EventReader, kind: str, rows: int) -> list[Any]:
    """Events of `kind` (others skipped) until they carried `rows` rows, at most 10 s apart."""
    found = []
    while sum(len(e.data["predictions"]) for e in found) < rows:
        event = reader.next(timeout=10)
        if event.event == kind:
            found.append(event)
    return found


def judge_calls(fake: FakeOpenAI, upstream: str, content: str | None = None) -> list[dict]:
    """What the fake endpoint was asked for `upstream` (with this last message, if given)."""
    return [
        r
        for r in fake.requests
        if r["body"]["model"] == upstream
        and (content is None or r["body"]["messages"][-1]["content"] == content)
    ]


# -- configuration ----------------------------------------------------------------------------


BAD_SPECS: list[tuple[str, Any, str]] = [
    ("unknown model", judge_spec("no-such-model"), "no model named"),
    ("placeholder", judge_spec("M", prompt="{prompt} {answer}"), "{answer}"),
    ("attribute", judge_spec("M", prompt="{prompt.__class__}"), "placeholder"),
    ("conversion", judge_spec("M", prompt="{prediction!r}"), "placeholder"),
    ("format spec", judge_spec("M", prompt="{prediction:>10}"), "placeholder"),
    ("lone brace", judge_spec("M", prompt="score {prediction} }"), "valid template"),
    ("min >= max", judge_spec("M", min=5, max=5), "greater than min"),
    ("bool bound", judge_spec("M", min=False), "finite number"),
    ("bad name", judge_spec("M", name="no spaces"), "letter"),
    ("unknown key", judge_spec("M", temperature=1), "not a judge setting"),
    ("missing key", {"name": "q", "model": "M", "prompt": "x", "min": 0}, "required"),
    ("not a list", {"q": 1}, "list of judges"),
]


@pytest.mark.parametrize(("case", "spec", "needle"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_judge_configs_are_422_and_create_nothing(
    server: ServerHandle,
    new_user: NewUser,
    fake_openai: FakeOpenAI,
    case: str,
    spec: Any,
    needle: str,
) -> None:
    user = new_user()
    model = register_remote(user.http, fake_openai.base_url, "echo")
    if isinstance(spec, dict) and spec.get("model") == "M":
        spec = {**spec, "model": model["name"]}
    judges = spec if case == "not a list" else [spec]
    job_id = f"j-{uuid.uuid4().hex[:12]}"
    resp = user.http.post(JOBS, json={"id": job_id, "config": {"predictions": {"judges": judges}}})
    error = assert_error(resp, 422)
    assert needle in error["message"], error
    assert error["details"][0]["loc"][:4] == ["body", "config", "predictions", "judges"]
    assert user.http.get(f"{JOBS}/{job_id}").status_code == 404


def test_judge_config_rules_that_pass_and_the_reserved_prefix(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    user, other = new_user(), new_user()
    mine = register_remote(user.http, fake_openai.base_url, "echo")
    theirs = register_remote(other.http, fake_openai.base_url, "echo")
    # Another user's model is not in the caller's registry.
    resp = user.http.post(
        JOBS, json={"config": {"predictions": {"judges": [judge_spec(theirs["name"])]}}}
    )
    assert "no model named" in assert_error(resp, 422)["message"]
    # Two judges with one name.
    twice = [judge_spec(mine["name"]), judge_spec(mine["id"])]
    resp = user.http.post(JOBS, json={"config": {"predictions": {"judges": twice}}})
    assert "names two judges" in assert_error(resp, 422)["message"]
    # Escaped braces, the model by id, float bounds: accepted.
    escaped = judge_spec(mine["id"], prompt='{{"answer": "{prediction}"}} vs {ground_truth}')
    job_id = judge_job(user.http, {**escaped, "min": -1.5, "max": 1.5})
    # Clients cannot send judge scores themselves.
    bad = row(1, 1, 0, metrics={"judge:quality": 1.0})
    resp = user.http.post(f"{PRED}/{job_id}", json={"predictions": [row(1, 1, 1), bad]})
    assert "reserved for judges" in assert_error(resp, 422)["message"]
    assert fetch_all(user.http, job_id) == []


# -- grading against the fake endpoint --------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def judge_server(request: pytest.FixtureRequest, make_server: MakeServer) -> ServerHandle:
    return make_server(request.param, extra_env=FAST_RETRIES)


def test_rows_are_graded_into_metrics_rollups_trends_matrix_stream_and_export(
    judge_server: ServerHandle, fake_openai: FakeOpenAI
) -> None:
    key = judge_server.create_key("judged", scopes="all")
    headers = {"X-API-Key": key}
    with judge_server.client(key) as http:
        model = register_remote(http, fake_openai.base_url, "slow-300")
        job_id = judge_job(http, judge_spec(model["name"]))
        answers = {0: "7", 1: "3.5", 2: "abc", 3: "42"}
        rows = [row(1, 10, i, prediction=p) for i, p in answers.items()]
        graded_prompt = "Grade this answer.\nQ: prompt 2\nscore: abc"
        asked_before = len(judge_calls(fake_openai, "slow-300", graded_prompt))
        with EventReader(judge_server.base_url, f"{PRED}/{job_id}/stream", headers) as events:
            events.next_of("heartbeat")
            assert ingest(http, job_id, rows)["created"] == 4
            # Ingest answered before any judge did (each answer takes 300 ms).
            assert all("judge:quality" not in (r["metrics"] or {}) for r in fetch_all(http, job_id))
            assert status_of(http, job_id)["judges"][0]["pending"] == 4
            status = wait_graded(http, job_id)
            updated = events_of(events, "prediction_updated", rows=2)
        summary = status["judges"][0]
        assert (summary["graded"], summary["failed"], summary["pending"]) == (2, 2, 0)
        assert summary["metric"] == "judge:quality"
        assert status["runs"]["completed"] == 1
        # Failures are recorded with the judge's answer and why; each was asked 3 times.
        failures = {f["sample_index"]: f for f in status["failures"]}
        assert status["failures_total"] == 2
        assert failures[2]["error"].startswith("unparseable")
        assert failures[2]["answer"].endswith("SCORE: ABC")
        assert failures[3]["error"] == "out of range: 42 is not within [0, 10]"
        assert failures[2]["attempts"] == failures[3]["attempts"] == 3
        asked = len(judge_calls(fake_openai, "slow-300", graded_prompt)) - asked_before
        assert asked == 3
        # Scores in the rows; never a silent zero for the failed ones.
        stored = by_index(fetch_all(http, job_id))
        assert stored[0]["metrics"] == {"judge:quality": 7.0}
        assert stored[1]["metrics"] == {"judge:quality": 3.5}
        assert stored[2]["metrics"] in (None, {}) and stored[3]["metrics"] in (None, {})
        # The stream announced the graded rows with their new metrics (grades written together
        # share an event).
        seen = {p["sample_index"]: (e.data, p) for e in updated for p in e.data["predictions"]}
        assert set(seen) == {0, 1}
        data, announced = seen[0]
        assert data["judge"] == "quality" and data["reason"] == "judge"
        assert announced["metrics"] == {"judge:quality": 7.0}
        # Rollups: trends, best, matrix.
        trends = http.get(f"{PRED}/{job_id}/trends").json()
        assert trends["trends"][0]["metrics"] == {"judge:quality": 5.25}
        assert trends["best"]["metrics"]["judge:quality"] == {"epoch": 1, "step": 10, "value": 5.25}
        matrix = http.get(f"{PRED}/{job_id}/matrix", params={"metric": "judge:quality"}).json()
        assert [s["values"] for s in matrix["samples"]] == [[7.0], [3.5], [None], [None]]
        exported = http.get(f"{PRED}/{job_id}/export", params={"format": "jsonl"}).text
        lines = [json.loads(line) for line in exported.splitlines()]
        assert lines[0]["metrics"] == {"judge:quality": 7.0}

        # Re-sent rows are graded again: the new version's score replaces the old one exactly.
        before = len(judge_calls(fake_openai, "slow-300"))
        ingest(http, job_id, [row(1, 10, 0, prediction="9"), row(1, 10, 2, prediction="1")])
        status = wait_graded(http, job_id)
        assert (status["judges"][0]["graded"], status["judges"][0]["failed"]) == (3, 1)
        assert len(judge_calls(fake_openai, "slow-300")) == before + 2
        stored = by_index(fetch_all(http, job_id))
        assert stored[0]["metrics"] == {"judge:quality": 9.0}
        assert stored[2]["metrics"] == {"judge:quality": 1.0}
        trends = http.get(f"{PRED}/{job_id}/trends").json()
        assert trends["trends"][0]["metrics"]["judge:quality"] == pytest.approx((9 + 3.5 + 1) / 3)
        assert [f["sample_index"] for f in status_of(http, job_id)["failures"]] == [3]


def test_upstream_failures_are_retried_then_recorded(
    judge_server: ServerHandle, fake_openai: FakeOpenAI
) -> None:
    key = judge_server.create_key("failing", scopes="all")
    with judge_server.client(key) as http:
        broken = register_remote(http, fake_openai.base_url, "fail-500")
        flaky = register_remote(http, fake_openai.base_url, "flaky-2")
        job_id = judge_job(
            http, judge_spec(broken["name"], name="broken"), judge_spec(flaky["name"], name="flaky")
        )
        before = len(judge_calls(fake_openai, "fail-500"))
        ingest(
            http,
            job_id,
            [row(2, 20, i, prediction=str(i), prompt=f"q-{job_id}-{i}") for i in range(3)],
        )
        status = wait_graded(http, job_id)
        judges = {j["name"]: j for j in status["judges"]}
        assert (judges["broken"]["graded"], judges["broken"]["failed"]) == (0, 3)
        assert (judges["flaky"]["graded"], judges["flaky"]["failed"]) == (3, 0)
        assert len(judge_calls(fake_openai, "fail-500")) - before == 3 * 3  # 3 attempts each
        for failure in status["failures"]:
            assert failure["judge"] == "broken"
            assert failure["error"].startswith("upstream error 502"), failure
            assert "answered 500" in failure["error"]
            assert failure["attempts"] == 3 and failure["answer"] is None
        stored = by_index(fetch_all(http, job_id))
        assert [stored[i]["metrics"] for i in range(3)] == [
            {"judge:flaky": float(i)} for i in range(3)
        ]
        # Every call was traced as a judge call.
        traces = http.get("/api/analytics/traces", params={"limit": 100}).json()["traces"]
        judge_traces = [t for t in traces if t["operation"] == "judge"]
        assert (
            len(judge_traces) == 3 * 3 + 3 * 3
        )  # broken: 3 errors per row; flaky: 2 errors + 1 ok
        assert sum(t["status"] == "success" for t in judge_traces) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_grading_resumes_after_a_killed_server(
    make_server: MakeServer, fake_openai: FakeOpenAI, backend: Backend
) -> None:
    env = {
        **FAST_RETRIES,
        "FINETUNE_LAB_BATCH_LEASE_S": "2",
        "FINETUNE_LAB_JUDGE_CONCURRENCY": "1",
    }
    server = make_server(backend, extra_env=env)
    key = server.create_key("restarter", scopes="all")
    count = 20
    with server.client(key) as http:
        model = register_remote(http, fake_openai.base_url, "slow-150")
        job_id = judge_job(http, judge_spec(model["name"]))
        ingest(http, job_id, [row(1, 5, i, prediction=str(i % 10)) for i in range(count)])
        deadline = time.monotonic() + 30
        while status_of(http, job_id)["judges"][0]["graded"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    server.restart()
    with server.client(key) as http:
        status = wait_graded(http, job_id, timeout=90)
        assert (status["judges"][0]["graded"], status["judges"][0]["failed"]) == (count, 0)
        assert status["runs"] == {
            "queued": 0,
            "running": 0,
            "completed": 1,
            "cancelled": 0,
            "failed": 0,
        }
        stored = by_index(fetch_all(http, job_id))
        assert all(stored[i]["metrics"] == {"judge:quality": float(i % 10)} for i in range(count))
        # The rollup stayed exact: no grade counted twice across the restart.
        trends = http.get(f"{PRED}/{job_id}/trends").json()["trends"]
        expected = sum(i % 10 for i in range(count)) / count
        assert trends[0]["metrics"]["judge:quality"] == pytest.approx(expected, abs=1e-12)


def test_deleting_the_job_or_revoking_its_key_stops_grading(
    judge_server: ServerHandle, fake_openai: FakeOpenAI
) -> None:
    admin = judge_server.create_key("owner", scopes="all", name="admin")
    worker_key = judge_server.create_key("owner", scopes="all", name="trainer")
    with judge_server.client(admin) as http, judge_server.client(worker_key) as trainer:
        model = register_remote(http, fake_openai.base_url, "slow-300")
        deleted = judge_job(http, judge_spec(model["name"]))
        revoked = judge_job(trainer, judge_spec(model["name"]))
        for job_id in (deleted, revoked):
            ingest(
                http,
                job_id,
                [row(1, 1, i, prediction="5", prompt=f"{job_id} {i}") for i in range(120)],
            )
        time.sleep(0.5)
        assert http.delete(f"{JOBS}/{deleted}").status_code == 200
        res = judge_server.cli(
            "keys", "revoke", worker_key[:12], "--database-url", judge_server.database_url
        )
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 30
        while True:
            status = status_of(http, revoked)
            if status["runs"]["cancelled"] == 1:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert status["stopped_reason"] == "grading stopped: the job's API key was revoked"
        graded = status["judges"][0]["graded"]
        assert graded < 120 and status["judges"][0]["pending"] == 120 - graded
        # Nothing more is asked for either job once the in-flight calls are done.
        time.sleep(0.5)
        calls = len([r for r in judge_calls(fake_openai, "slow-300")])
        time.sleep(1.5)
        assert len(judge_calls(fake_openai, "slow-300")) == calls
        assert status_of(http, revoked)["judges"][0]["graded"] == graded
        assert http.get(f"{PRED}/{deleted}/judges").status_code == 404


# -- the tiny local model through the registry ------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_local_model_judge_records_unparseable_answers(
    make_server: MakeServer, tiny_checkpoint: Path, backend: Backend
) -> None:
    env = {**FAST_RETRIES, "FINETUNE_LAB_JUDGE_ATTEMPTS": "2", "FINETUNE_LAB_JUDGE_MAX_TOKENS": "8"}
    server = make_server(backend, extra_env=env)
    key = server.create_key("local", scopes="all")
    with server.client(key) as http:
        model = register_local(http, tiny_checkpoint)
        spec = {"name": "tiny", "model": model["name"], "prompt": "{prompt}", "min": 0, "max": 1}
        job_id = judge_job(http, spec)
        questions = list(FACTS)
        ingest(
            http, job_id, [row(1, 1, i, prompt=q, prediction="x") for i, q in enumerate(questions)]
        )
        status = wait_graded(http, job_id, timeout=120)
        # The tiny model answers its memorized words: no score in any of them, all recorded.
        assert status["judges"][0]["failed"] == len(FACTS)
        failures = {f["sample_index"]: f for f in status["failures"]}
        for i, question in enumerate(questions):
            assert failures[i]["answer"] == FACTS[question]
            assert failures[i]["error"] == "unparseable: the answer holds no number"
            assert failures[i]["attempts"] == 2
        assert all(not r["metrics"] for r in fetch_all(http, job_id))


# -- the SDKs ---------------------------------------------------------------------------------


def test_sdk_judges_sync_async_and_reimport(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    import anyio

    from finetune_lab import AsyncFinetuneLabClient, FinetuneLabClient
    from finetune_lab.schema import JudgeStatus

    user = new_user()
    model = register_remote(user.http, fake_openai.base_url, "echo")
    with FinetuneLabClient(api_key=user.key, base_url=server.base_url) as client:
        job = client.jobs.create(config={"predictions": {"judges": [judge_spec(model["name"])]}})
        items = [row(1, 1, i, prediction=str(i), metrics={"reward": 1.0}) for i in range(3)]
        client.training_predictions.create(job.id, items)
        deadline = time.monotonic() + 60
        while (status := client.training_predictions.judges(job.id)).judges[0].graded < 3:
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        assert isinstance(status, JudgeStatus)
        assert (status.judges[0].metric, status.failures_total) == ("judge:quality", 0)

        async def read_async() -> JudgeStatus:
            async with AsyncFinetuneLabClient(api_key=user.key, base_url=server.base_url) as ac:
                return await ac.training_predictions.judges(job.id, limit=1)

        assert anyio.run(read_async).judges[0].graded == 3
        # An export re-imported elsewhere: judge scores are server-computed, so they are left
        # out (the target job's own judges would grade again); other metrics come along.
        path = client.training_predictions.export(job.id, format="jsonl", path=tmp_path / "x.jsonl")
        assert '"judge:quality"' in Path(path).read_text()
        target = client.jobs.create(name="copy")
        client.training_predictions.import_file(target.id, path)
        copied = list(client.training_predictions.iter(target.id))
        assert [p.metrics for p in copied] == [{"reward": 1.0}] * 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0008_up_down_up(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from finetune_lab.server.db import Database, upgrade
    from finetune_lab.server.db.migrate import alembic_config

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        url = request.getfixturevalue("pg_database_url")
    db = Database(url)
    try:
        upgrade(db.engine)
        assert {"judge_runs", "judge_results"} <= set(inspect(db.engine).get_table_names())
        command.downgrade(alembic_config(db.engine), "0007")
        assert not {"judge_runs", "judge_results"} & set(inspect(db.engine).get_table_names())
        upgrade(db.engine)
        assert {"judge_runs", "judge_results"} <= set(inspect(db.engine).get_table_names())
    finally:
        db.dispose()
