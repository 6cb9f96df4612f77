"""The scoring pool and the per-row time budgets, without HTTP (tests/server/test_stalls.py has
the end-to-end checks)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from finetune_lab.scoring import worker
from finetune_lab.scoring.worker import Budget, ValidatorSpec
from finetune_lab.server.services.scoring_pool import (
    CHUNK_ROWS,
    MIN_CHUNK_ROWS,
    PoolSettings,
    ScoringPool,
    chunks,
)

UNIQUE = ValidatorSpec.of(
    {"predictions": {"validators": {"json_schema": {"type": "array", "uniqueItems": True}}}}
)
OBJECT = ValidatorSpec.of(
    {
        "predictions": {
            "validators": {
                "json_schema": {"type": "object", "properties": {"n": {"type": "integer"}}}
            }
        }
    }
)


def heavy_array(items: int) -> str:
    """uniqueItems over objects compares them pairwise: quadratic, pure Python."""
    return json.dumps([{"a": i, "b": [i, str(i)]} for i in range(items)])


def mixed_rows(count: int) -> list[tuple[str, str | None]]:
    shapes = ['{"n": 1}', '{"n": "x"}', "not json", "[1, 2]", " The Answer ", ""]
    truths = ['{"n": 1}', None, "the answer", "[1,2]", "The answer", "x"]
    return [(shapes[i % 6], truths[(i // 6) % 6]) for i in range(count)]


@pytest.mark.parametrize("count", [1, 49, 50, 51, 999, 1000, 1001, 5000])
@pytest.mark.parametrize("workers", [1, 2, 16])
def test_chunks_cover_every_row_once_in_order(count: int, workers: int) -> None:
    parts = chunks(count, workers)
    assert [i for part in parts for i in part] == list(range(count))
    assert all(len(part) <= CHUNK_ROWS for part in parts)
    assert all(len(part) >= MIN_CHUNK_ROWS for part in parts[:-1])
    if count >= MIN_CHUNK_ROWS * workers:  # enough rows: every worker gets some
        assert len(parts) >= workers


def test_a_row_past_its_budget_is_a_timeout_and_the_chunk_goes_on() -> None:
    rows = [("[1, 1]", None), (heavy_array(3_000), None), ("[1, 2]", None)]
    started = time.monotonic()
    duplicate, slow, fine = worker.score_chunk(UNIQUE, rows, Budget(row_s=0.2, chunk_s=30))
    assert time.monotonic() - started < 5
    assert duplicate[4] is False and "non-unique" in duplicate[6][0]["message"]
    assert slow[4] is False
    [error] = slow[6]
    assert error == {
        "validator": "json_schema",
        "type": "timeout",
        "message": "validation took longer than the 0.2 s budget per row",
        "detail": {"budget_s": 0.2},
    }
    assert fine[4:] == (True, "json_parse+json_schema", [])
    # The timer is gone and the handler restored: nothing fires after the chunk.
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None, signal.default_int_handler)


def test_rows_after_the_chunk_budget_are_not_validated() -> None:
    rows = [(heavy_array(3_000), None)] * 5 + [("[1, 2]", "[1, 2]")]
    started = time.monotonic()
    results = worker.score_chunk(UNIQUE, rows, Budget(row_s=0.2, chunk_s=0.5))
    assert time.monotonic() - started < 5
    messages = [result[6][0]["message"] for result in results]
    assert all(result[4] is False for result in results)
    assert "budget per row" in messages[0]
    assert "batch's validation time budget was spent" in messages[-1]
    assert results[-1][:4] == (1.0, 0.0, 1.0, 1.0)  # scored all the same


def test_the_last_resort_keeps_a_rows_scores() -> None:
    [result] = worker.scores_only(UNIQUE, [("[1]", "[2]")], row_s=1)
    assert result[:4] == worker.score_chunk(None, [("[1]", "[2]")], None)[0][:4]
    assert result[4:6] == (False, "json_parse+json_schema")
    assert result[6][0]["type"] == "timeout"


@pytest.fixture
def pool() -> ScoringPool:
    settings = PoolSettings(workers=1, row_s=60, batch_s=600, schema_check_s=60, inline_s=0)
    scoring = ScoringPool(settings)
    scoring.start()
    yield scoring
    scoring.close()


def test_pool_results_equal_in_process_results(pool: ScoringPool) -> None:
    rows = mixed_rows(1_200)  # three chunks
    for spec in (
        None,
        OBJECT,
        ValidatorSpec.of({"predictions": {"validators": {"json_parse": 1}}}),
    ):
        assert pool.score_rows(spec, rows) == worker.score_chunk(spec, rows, None)


def test_submit_hands_back_control_while_the_workers_score(pool: ScoringPool) -> None:
    """Ingest fills in the rest of each row between submit and collect: submit must not wait
    for the scores (and the results still come back whole, in order)."""
    rows: list[tuple[str, str | None]] = [(heavy_array(700), None)] * 2 + mixed_rows(100)
    started = time.perf_counter()
    collect = pool.submit(UNIQUE, rows)
    submitted = time.perf_counter() - started
    results = collect()
    collected = time.perf_counter() - started - submitted
    assert submitted < collected / 2, (submitted, collected)
    assert results == worker.score_chunk(UNIQUE, rows, None)


def test_workers_are_fresh_interpreters(pool: ScoringPool) -> None:
    import fastapi  # noqa: F401  (this process has the server loaded; the workers must not)

    assert pool._pool is not None
    probe = (
        "sorted(m for m in ('fastapi', 'sqlalchemy', 'torch') if m in __import__('sys').modules)"
    )
    assert pool._pool.schedule(eval, args=(probe,)).result(timeout=60) == []


def test_workers_yield_the_cpu_to_the_server(pool: ScoringPool) -> None:
    assert pool._pool is not None
    niceness = pool._pool.schedule(os.nice, args=(0,)).result(timeout=60)
    assert niceness == min(19, os.nice(0) + worker.WORKER_NICENESS)


def test_a_worker_that_dies_mid_chunk_loses_no_row(pool: ScoringPool) -> None:
    assert pool._pool is not None
    pid = pool._pool.schedule(os.getpid).result(timeout=60)
    rows = [(heavy_array(1_500), None), *mixed_rows(60)]
    results: list[object] = []
    runner = threading.Thread(target=lambda: results.extend(pool.score_rows(UNIQUE, rows)))
    runner.start()
    time.sleep(0.5)  # the one worker is in the heavy row
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=120)
    assert pool._pool.schedule(os.getpid).result(timeout=60) != pid  # it was replaced
    assert results == worker.score_chunk(UNIQUE, rows, None)


def test_a_row_whose_worker_dies_is_stored_with_its_scores(pool: ScoringPool) -> None:
    assert pool._pool is not None
    pid = pool._pool.schedule(os.getpid).result(timeout=60)
    rows = [(heavy_array(1_500), "[]")]
    results: list[object] = []
    runner = threading.Thread(target=lambda: results.extend(pool.score_rows(UNIQUE, rows)))
    runner.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=120)
    assert results == worker.scores_only(UNIQUE, rows, row_s=60)
    assert results[0][:4] == worker.score_chunk(None, rows, None)[0][:4]


def test_job_config_check_runs_in_a_worker(pool: ScoringPool) -> None:
    bad = {"predictions": {"validators": {"json_schema": {"pattern": "(?=x)"}}}}
    assert "RE2" in (pool.check_config(bad) or "")
    assert pool.check_config({"predictions": {"validators": {"json_schema": {}}}}) is None
    assert "malformed" in (pool.check_config({"predictions": {"validators": [1]}}) or "")
    assert pool.check_config({}) is None
