"""Hostile rows must not stall the server: while each attack runs, a poller times `/healthz`.

Each attack once froze the whole server (a backtracking regex or a long edit distance held the
GIL) or cost seconds per batch (a schema re-checked per batch, validation without a limit).
Scores and validation now run in worker processes, schema regexes on RE2, validation under time
budgets and CER under a fixed length bound (docs/CONTRACT.md, "Scoring and validation costs").
A pure CPU matter: SQLite is enough.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ._helpers import JOBS, assert_error, create_job, fetch_all, ingest, new_id, row

ROW_BUDGET_S = 0.5
BATCH_BUDGET_S = 2.0
SCHEMA_CHECK_S = 5.0
ENV = {
    "FINETUNE_LAB_SCORING_WORKERS": "2",
    "FINETUNE_LAB_VALIDATION_ROW_BUDGET_S": str(ROW_BUDGET_S),
    "FINETUNE_LAB_VALIDATION_BATCH_BUDGET_S": str(BATCH_BUDGET_S),
    "FINETUNE_LAB_SCHEMA_CHECK_BUDGET_S": str(SCHEMA_CHECK_S),
    "FINETUNE_LAB_RATE_LIMIT": "off",
}
EVIL = "^(a+)+$"  # backtracking doubles its work per "a" before the "!"


@pytest.fixture(scope="module")
def stall_server(_infra: Any) -> Iterator[Any]:
    handle = _infra.new_server("sqlite", extra_env=ENV)
    yield handle
    _infra.stop_server(handle)


@pytest.fixture
def client(stall_server: Any, _infra: Any) -> Iterator[httpx.Client]:
    key = _infra.alice_key(stall_server)
    with httpx.Client(
        base_url=stall_server.base_url, headers={"X-API-Key": key}, timeout=120
    ) as http:
        yield http


class HealthPoller:
    """GET /healthz in a loop on its own connection; the latency of every answer."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=120) as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                self.latencies.append(time.perf_counter() - started)
                self._stop.wait(0.02)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=180)


def healthz_baseline(base_url: str) -> float:
    """The slowest of 20 idle /healthz answers on this machine, now."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        times = []
        for _ in range(20):
            started = time.perf_counter()
            http.get("/healthz")
            times.append(time.perf_counter() - started)
    return max(times)


def under_attack(base_url: str, attack: Callable[[], Any]) -> tuple[Any, float, float]:
    """(attack's result, its seconds, the slowest /healthz while it ran); asserts the server
    kept answering: within 1 s, or 10x the idle baseline on a very loaded machine."""
    limit = max(1.0, 10 * healthz_baseline(base_url))
    with HealthPoller(base_url) as poller:
        time.sleep(0.1)
        started = time.perf_counter()
        result = attack()
        elapsed = time.perf_counter() - started
    assert poller.latencies, "the poller got no answer at all"
    slowest = max(poller.latencies)
    assert slowest < limit, (
        f"/healthz took {slowest:.2f} s during the attack (limit {limit:.2f} s; median "
        f"{statistics.median(poller.latencies):.3f} s over {len(poller.latencies)} polls)"
    )
    return result, elapsed, slowest


def schema_job(http: httpx.Client, schema: dict[str, Any]) -> str:
    job_id = new_id()
    config = {"predictions": {"validators": {"json_schema": schema}}}
    create_job(http, job_id, config=config)
    return job_id


def only_row(http: httpx.Client, job_id: str) -> dict[str, Any]:
    [stored] = fetch_all(http, job_id)
    return stored


# -- item 1: catastrophic regexes run on RE2 -----------------------------------------------

A_BANG = "a" * 40 + "!"  # 2^40 backtracking steps in Python's re; linear in RE2

REGEX_ATTACKS = {
    "pattern": ({"type": "string", "pattern": EVIL}, json.dumps(A_BANG), "does not match"),
    "patternProperties": (
        {"type": "object", "patternProperties": {EVIL: {}}, "additionalProperties": False},
        json.dumps({A_BANG: 1}),
        "does not match any of the regexes",
    ),
    "propertyNames": (
        {"type": "object", "propertyNames": {"pattern": EVIL}},
        json.dumps({A_BANG: 1}),
        "does not match",
    ),
}


@pytest.mark.parametrize("where", list(REGEX_ATTACKS))
def test_backtracking_pattern_is_linear(client, stall_server, where) -> None:
    schema, prediction, message = REGEX_ATTACKS[where]
    job_id = schema_job(client, schema)
    result, elapsed, _ = under_attack(
        stall_server.base_url,
        lambda: ingest(client, job_id, [row(0, 0, 0, prediction=prediction)]),
    )
    assert result["created"] == 1
    stored = only_row(client, job_id)
    assert stored["validation_pass"] is False
    [error] = stored["validation_errors"]
    assert error["validator"] == "json_schema"
    assert message in error["message"]
    assert "type" not in error  # a real verdict, not a timeout
    assert elapsed < 10


def test_unevaluated_properties_regex_is_stopped_by_the_row_budget(client, stall_server) -> None:
    # jsonschema re-runs patternProperties with Python's re inside unevaluatedProperties: the
    # row budget interrupts it; the next row in the batch is validated as usual.
    schema = {"type": "object", "patternProperties": {EVIL: {}}, "unevaluatedProperties": False}
    job_id = schema_job(client, schema)
    rows = [row(0, 0, 0, prediction=json.dumps({A_BANG: 1})), row(0, 0, 1, prediction="{}")]
    _, elapsed, _ = under_attack(stall_server.base_url, lambda: ingest(client, job_id, rows))
    evil, fine = fetch_all(client, job_id)
    assert evil["validation_pass"] is False
    [error] = evil["validation_errors"]
    assert error["type"] == "timeout"
    assert error["validator"] == "json_schema"
    assert "budget per row" in error["message"]
    assert fine["validation_pass"] is True
    assert evil["exact_match"] == 0.0  # the scores are stored all the same
    assert elapsed < ROW_BUDGET_S + 10


def test_patterns_refused_by_re2_are_422_at_job_creation(client) -> None:
    for pattern in ("^(?=a)b", "(a)\\1", "(?<!x)y"):
        config = {"predictions": {"validators": {"json_schema": {"pattern": pattern}}}}
        job_id = new_id()
        error = assert_error(client.post(JOBS, json={"id": job_id, "config": config}), 422)
        assert "RE2" in error["message"], error
        assert_error(client.get(f"{JOBS}/{job_id}"), 404)
    # Draft 4's metaschema does not mark patternProperties keys as regexes: checked anyway.
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "patternProperties": {"(?!a)": {}},
    }
    config = {"predictions": {"validators": {"json_schema": draft4}}}
    assert "RE2" in assert_error(client.post(JOBS, json={"config": config}), 422)["message"]


def test_ecma_unicode_escapes_still_match(client) -> None:
    job_id = schema_job(client, {"type": "string", "pattern": "^\\u0041+$"})
    ingest(client, job_id, [row(0, 0, 0, prediction='"AAA"'), row(0, 0, 1, prediction='"aaa"')])
    upper, lower = fetch_all(client, job_id)
    assert upper["validation_pass"] is True
    assert lower["validation_pass"] is False


# -- item 2: edit distance of two long texts -----------------------------------------------


def test_long_different_texts_leave_cer_null_without_a_stall(client, stall_server) -> None:
    truth = "the quick brown fox " * 45_000  # 900,000 characters
    prediction = "a lazy dog sleeps on " * 42_857  # 899,997: the lengths do not settle CER
    job_id = new_id()
    create_job(client, job_id)
    _, elapsed, _ = under_attack(
        stall_server.base_url,
        lambda: ingest(client, job_id, [row(0, 0, 0, prediction=prediction, ground_truth=truth)]),
    )
    stored = only_row(client, job_id)
    assert stored["char_error_rate"] is None
    assert stored["exact_match"] == 0.0
    assert stored["length_ratio"] == pytest.approx(len(prediction.strip()) / len(truth.strip()))
    assert stored["word_overlap"] == 0.0
    assert elapsed < 15


# -- item 3: validators that burn CPU --------------------------------------------------------


def test_unique_items_over_a_long_array_times_out(client, stall_server) -> None:
    job_id = schema_job(client, {"type": "array", "uniqueItems": True})
    heavy = json.dumps([{"a": i, "b": [i, str(i)]} for i in range(4_000)])  # O(n^2) compares
    rows = [row(0, 0, 0, prediction=heavy), row(0, 0, 1, prediction="[1, 2]")]
    _, elapsed, _ = under_attack(stall_server.base_url, lambda: ingest(client, job_id, rows))
    slow, fine = fetch_all(client, job_id)
    assert slow["validation_pass"] is False
    assert slow["validation_errors"][0]["type"] == "timeout"
    assert slow["validation_errors"][0]["detail"] == {"budget_s": ROW_BUDGET_S}
    assert fine["validation_pass"] is True and fine["validation_errors"] == []
    assert elapsed < ROW_BUDGET_S + 10


def test_a_batch_spends_at_most_its_validation_budget(client, stall_server) -> None:
    job_id = schema_job(client, {"type": "array", "uniqueItems": True})
    heavy = json.dumps([{"a": i, "b": [i, str(i)]} for i in range(4_000)])
    rows = [row(0, 0, i, prediction=heavy) for i in range(12)]  # ~12 x 30 s unchecked
    _, elapsed, _ = under_attack(stall_server.base_url, lambda: ingest(client, job_id, rows))
    stored = fetch_all(client, job_id)
    assert len(stored) == 12
    errors = [p["validation_errors"][0] for p in stored]
    assert all(p["validation_pass"] is False for p in stored)
    assert all(e["type"] == "timeout" for e in errors)
    assert any("batch's validation time budget" in e["message"] for e in errors)
    assert elapsed < BATCH_BUDGET_S + 10


def test_a_big_schema_is_compiled_once_per_job(client, stall_server) -> None:
    count = 2_000
    schema = {
        "type": "object",
        "patternProperties": {f"^k{i}_[a-z]+$": {"type": "integer"} for i in range(count)},
        "additionalProperties": False,
    }
    started = time.perf_counter()
    job_id = schema_job(client, schema)  # checked once here, in a worker
    creation = time.perf_counter() - started
    times = []
    for step in range(4):
        started = time.perf_counter()
        ingest(client, job_id, [row(0, step, 0, prediction='{"k7_abc": 1}')])
        times.append(time.perf_counter() - started)
    # The first batch on each worker compiles the patterns; later ones reuse them. Before,
    # every batch re-checked the schema: as long as the creation.
    assert min(times) < creation / 4, (creation, times)
    assert all(p["validation_pass"] for p in fetch_all(client, job_id))


def test_job_creation_checks_a_huge_schema_within_its_budget(client, stall_server) -> None:
    schema = {"anyOf": [{"pattern": f"^x{i}(y|z)+$", "minLength": i} for i in range(40_000)]}
    config = {"predictions": {"validators": {"json_schema": schema}}}
    job_id = new_id()
    resp, elapsed, _ = under_attack(
        stall_server.base_url,
        lambda: client.post(JOBS, json={"id": job_id, "config": config}),
    )
    error = assert_error(resp, 422)
    assert f"within {SCHEMA_CHECK_S:g} s" in error["message"], error
    assert elapsed < SCHEMA_CHECK_S + 10
    assert_error(client.get(f"{JOBS}/{job_id}"), 404)
    # The killed worker was replaced: the next job is checked and ingested as usual.
    job_id = schema_job(client, {"type": "integer"})
    ingest(client, job_id, [row(0, 0, 0, prediction="3")])
    assert only_row(client, job_id)["validation_pass"] is True


def test_every_row_is_scored_and_validated_as_in_process(client, stall_server) -> None:
    """Chunks over two workers give exactly the in-process results, in order."""
    from finetune_lab.scoring import Validators, score

    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    job_id = schema_job(client, schema)
    predictions = ['{"n": 1}', '{"n": "x"}', "not json", '{"m": 2}'] * 300
    rows = [row(0, 0, i, prediction=p, ground_truth='{"n": 1}') for i, p in enumerate(predictions)]
    ingest(client, job_id, rows)
    validators = Validators(json_schema=schema)
    for stored in fetch_all(client, job_id):
        expected = score(stored["prediction"], stored["ground_truth"])
        assert stored["exact_match"] == expected.exact_match
        assert stored["char_error_rate"] == pytest.approx(expected.char_error_rate)
        verdict = validators(stored["prediction"])
        assert stored["validation_pass"] is verdict.passed
        assert stored["validation_errors"] == verdict.errors


def test_a_job_stored_before_the_re2_rule_fails_its_rows_not_the_ingest(
    client, stall_server
) -> None:
    """An older server accepted lookarounds; such a job's rows now fail validation with the
    reason, and the batch is stored."""
    import sqlalchemy as sa

    job_id = schema_job(client, {"type": "string", "pattern": "^a"})
    legacy = {"predictions": {"validators": {"json_schema": {"pattern": "^(?!b)"}}}}
    engine = sa.create_engine(stall_server.database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE jobs SET config = :config WHERE id = :id"),
            {"config": json.dumps(legacy), "id": job_id},
        )
    engine.dispose()
    ingest(client, job_id, [row(0, 0, 0, prediction='"abc"'), row(0, 0, 1, prediction="1")])
    text, number = fetch_all(client, job_id)
    assert text["validation_pass"] is False
    assert "not supported by RE2" in text["validation_errors"][0]["message"]
    assert number["validation_pass"] is True  # `pattern` only applies to strings
