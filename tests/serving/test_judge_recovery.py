"""Judges through failures: a database outage mid-grading, and call counts across a SIGKILL.

A database outage must not leave rows pending: the same process grades them once the database
answers again (no restart), none twice. A row is never asked more than the attempts setting,
restarts included.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from _support.appserver import Backend, ServerHandle
from _support.fake_openai import FakeOpenAI
from _support.infra import MakeServer
from _support.postgres import LocalCluster
from server._helpers import PRED, fetch_all, ingest, row

from .conftest import register_remote
from .test_judges import (
    BACKENDS,
    FAST_RETRIES,
    by_index,
    judge_calls,
    judge_job,
    judge_spec,
    status_of,
    wait_graded,
)

# A lease far longer than the outage: recovery must not wait for it to expire.
OUTAGE_ENV = {
    **FAST_RETRIES,
    "FINETUNE_LAB_BATCH_LEASE_S": "120",
    "FINETUNE_LAB_JUDGE_CONCURRENCY": "1",
    "FINETUNE_LAB_RATE_LIMIT": "off",
}
ROWS = 24


def wait_for_grades(server: ServerHandle, key: str, job_id: str, count: int) -> None:
    with server.client(key) as http:
        deadline = time.monotonic() + 30
        while status_of(http, job_id)["judges"][0]["graded"] < count:
            assert time.monotonic() < deadline, status_of(http, job_id)
            time.sleep(0.05)


def assert_all_graded_once(server: ServerHandle, key: str, job_id: str) -> None:
    """Every row graded (within 30 s of the database's return, far less than the lease),
    no failure, the run completed, and the rollup exact (no grade counted twice)."""
    with server.client(key) as http:
        status = wait_graded(http, job_id, timeout=30)
        assert (status["judges"][0]["graded"], status["judges"][0]["failed"]) == (ROWS, 0)
        assert status["runs"]["completed"] == 1 and status["runs"]["failed"] == 0, status
        stored = by_index(fetch_all(http, job_id))
        assert all(stored[i]["metrics"] == {"judge:quality": float(i % 10)} for i in range(ROWS))
        trends = http.get(f"{PRED}/{job_id}/trends").json()["trends"]
        expected = sum(i % 10 for i in range(ROWS)) / ROWS
        assert trends[0]["metrics"]["judge:quality"] == pytest.approx(expected, abs=1e-12)


def start_grading(server: ServerHandle, fake: FakeOpenAI) -> tuple[str, str]:
    key = server.create_key("outage", scopes="all")
    with server.client(key) as http:
        model = register_remote(http, fake.base_url, "slow-150")
        job_id = judge_job(http, judge_spec(model["name"]))
        ingest(http, job_id, [row(1, 5, i, prediction=str(i % 10)) for i in range(ROWS)])
    wait_for_grades(server, key, job_id, 3)
    return key, job_id


def test_postgresql_outage_mid_grading_recovers_without_a_restart(
    make_server: MakeServer, fake_openai: FakeOpenAI, private_cluster: LocalCluster
) -> None:
    server = make_server(
        "postgresql", extra_env=OUTAGE_ENV, database_url=private_cluster.create_database()
    )
    key, job_id = start_grading(server, fake_openai)
    pid = server.pid
    private_cluster.stop("immediate")  # a crash: every connection dies
    time.sleep(3)  # the judge keeps answering meanwhile; nothing can be written
    private_cluster.start()
    assert_all_graded_once(server, key, job_id)
    assert server.pid == pid  # the same process, never restarted
    assert "handed back after a database outage" in server.log_path.read_text()


@pytest.mark.slow
def test_sqlite_refusing_writes_mid_grading_recovers(
    make_server: MakeServer, fake_openai: FakeOpenAI
) -> None:
    """SQLite's outage: another process holds the write lock past the 30 s busy timeout. The
    server's writers queue on its own write lock, so the judge's write fails only after the
    writers ahead of it (about 60 s): the lock is held until the judge run logged its failure."""
    server = make_server("sqlite", extra_env=OUTAGE_ENV)
    key, job_id = start_grading(server, fake_openai)
    database = server.home / "finetune-lab.db"
    assert database.exists()
    blocker = sqlite3.connect(database, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # every write of the server waits, then fails
        deadline = time.monotonic() + 150
        while "judge run " not in server.log_path.read_text():
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.5)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert_all_graded_once(server, key, job_id)
    assert "handed back after a database outage" in server.log_path.read_text()


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_per_row_are_counted_across_a_sigkill(
    make_server: MakeServer, fake_openai: FakeOpenAI, backend: Backend, tmp_path: Path
) -> None:
    """Killed between a row's 2nd and 3rd call, the restarted server makes only the 3rd."""
    env = {
        "FINETUNE_LAB_JUDGE_BACKOFF_S": "1",  # pauses of 1 s then 2 s between the calls
        "FINETUNE_LAB_BATCH_POLL_S": "0.2",
        "FINETUNE_LAB_BATCH_LEASE_S": "2",
    }
    server = make_server(backend, extra_env=env)
    key = server.create_key("counter", scopes="all")
    prompt = f"q-{tmp_path.name}"
    with server.client(key) as http:
        model = register_remote(http, fake_openai.base_url, "fail-500")
        job_id = judge_job(http, judge_spec(model["name"]))
        content = f"Grade this answer.\nQ: {prompt}\nscore: 5"
        ingest(http, job_id, [row(1, 5, 0, prediction="5", prompt=prompt)])
        deadline = time.monotonic() + 30
        while len(judge_calls(fake_openai, "fail-500", content)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)  # during the 2 s pause before the 3rd call
    assert len(judge_calls(fake_openai, "fail-500", content)) == 2
    server.restart()
    with server.client(key) as http:
        status = wait_graded(http, job_id, timeout=60)
        assert (status["judges"][0]["graded"], status["judges"][0]["failed"]) == (0, 1)
        (failure,) = status["failures"]
        assert failure["attempts"] == 3
        assert failure["error"].startswith("upstream error 502"), failure
    assert len(judge_calls(fake_openai, "fail-500", content)) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_row_whose_calls_were_spent_before_a_sigkill_is_failed_not_asked_again(
    make_server: MakeServer, fake_openai: FakeOpenAI, backend: Backend, tmp_path: Path
) -> None:
    """With 1 attempt, a call cut short by the kill was the row's only call: after the restart
    the row is recorded failed (why, with no answer), never asked again."""
    env = {"FINETUNE_LAB_JUDGE_ATTEMPTS": "1", **FAST_RETRIES, "FINETUNE_LAB_BATCH_LEASE_S": "2"}
    server = make_server(backend, extra_env=env)
    key = server.create_key("spent", scopes="all")
    prompt = f"q-{tmp_path.name}"
    with server.client(key) as http:
        model = register_remote(http, fake_openai.base_url, "slow-5000")
        job_id = judge_job(http, judge_spec(model["name"]))
        content = f"Grade this answer.\nQ: {prompt}\nscore: 5"
        ingest(http, job_id, [row(1, 5, 0, prediction="5", prompt=prompt)])
        deadline = time.monotonic() + 30
        while not judge_calls(fake_openai, "slow-5000", content):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)  # the call is in flight
    server.restart()
    with server.client(key) as http:
        status = wait_graded(http, job_id, timeout=60)
        (failure,) = status["failures"]
        assert failure["attempts"] == 1 and failure["answer"] is None
        assert failure["error"].startswith("gave up after 1 call without"), failure
    assert len(judge_calls(fake_openai, "slow-5000", content)) == 1
