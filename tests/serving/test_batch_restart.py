"""A batch run survives its server: killed mid-run (lease expires) or stopped cleanly (lease
handed back), the next start resumes it without redoing answered prompts; never stuck."""

from __future__ import annotations

import os
import signal
import time

import pytest

from _support.appserver import Backend
from _support.fake_openai import FakeOpenAI
from _support.infra import MakeServer

from .conftest import register_remote
from .test_batch_testing import start_run, wait_for

PROMPTS = 30


@pytest.mark.parametrize(
    ("backend", "how"),
    [("sqlite", "kill"), ("postgresql", "kill"), ("sqlite", "terminate")],
)
def test_interrupted_run_resumes(
    make_server: MakeServer, fake_openai: FakeOpenAI, backend: Backend, how: str
) -> None:
    server = make_server(backend, extra_env={"FINETUNE_LAB_BATCH_LEASE_S": "2"})
    key = server.create_key("restarter", scopes="all")
    with server.client(key) as http:
        model = register_remote(http, fake_openai.base_url, "slow-100")
        items = [{"prompt": f"q{i}", "expected": f"Q{i}"} for i in range(PROMPTS)]
        suite = http.post("/api/test-suites", json={"name": "r", "items": items}).json()
        run_id = start_run(http, model_id=model["id"], test_suite_id=suite["id"], concurrency=1)[
            "test_run_id"
        ]
        deadline = time.monotonic() + 30
        while http.get(f"/api/batch-testing/status/{run_id}").json()["completed_prompts"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    if how == "kill":
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
    server.restart()
    with server.client(key) as http:
        status = wait_for(http, run_id, {"completed", "failed", "cancelled"}, timeout=60)
        assert status["status"] == "completed", status
        assert status["attempts"] == 2
        assert (status["completed_prompts"], status["failed_prompts"]) == (PROMPTS, 0)
        results = http.get(f"/api/batch-testing/results/{run_id}").json()["results"]
        assert [r["index"] for r in results] == list(range(PROMPTS))
        assert all(r["exact_match"] == 1.0 for r in results)
        # No prompt was answered twice: one trace per prompt (an answer in flight when the
        # process died may have been asked again, but only one was stored).
        traces = http.get(
            "/api/analytics/traces", params={"test_run_id": run_id, "limit": 1000}
        ).json()["traces"]
        assert len(traces) == PROMPTS
