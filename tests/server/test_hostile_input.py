"""Regressions for inputs the fuzzer (tests/fuzz) turned into 500s: each is now a 4xx with the
error body, or a stored row, and nothing half-written."""

from __future__ import annotations

import pytest

from ._helpers import JOBS, PRED, assert_error, create_job, list_page, new_id

LONE_SURROGATE = '"\\ud800"'  # a JSON escape that is no Unicode text
BIG_INT = str(2**64 + 5)  # valid JSON, beyond what any 64-bit JSON column writer takes


def post_raw(http, path: str, template: str):
    """POST the JSON text `template` with @S as a lone surrogate escape and @N as BIG_INT."""
    raw = template.replace("@S", LONE_SURROGATE).replace("@N", BIG_INT)
    return http.post(path, content=raw.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (JOBS, '{"name": @S}'),
        (JOBS, '{"config": {"a": @S}}'),
        (JOBS, '{"config": {@S: 1}}'),
        (JOBS, '{"config": {"a": [1, @N]}}'),
        (JOBS, '{"name": "n", "config": {"b": {@S: 1}}}'),
        ("/api/test-suites", '{"name": @S, "items": [{"prompt": "x"}]}'),
        ("/api/test-suites", '{"name": "s", "items": [{"prompt": @S}]}'),
        ("/api/models", '{"name": @S, "kind": "openai", "base_url": "http://x"}'),
        ("/api/analytics/traces", '{"model": @S}'),
        ("/api/analytics/traces", '{"model": "m", "metadata": {"n": @N}}'),
        ("/api/analytics/traces", '{"model": "m", "input": [@S]}'),
    ],
    ids=[
        "job-name-surrogate",
        "job-config-surrogate",
        "job-config-key-surrogate",
        "job-config-big-int",
        "job-config-nested-key-surrogate",
        "suite-name-surrogate",
        "suite-prompt-surrogate",
        "model-name-surrogate",
        "trace-model-surrogate",
        "trace-metadata-big-int",
        "trace-input-surrogate",
    ],
)
def test_unstorable_json_values_are_422(http, path: str, template: str) -> None:
    error = assert_error(post_raw(http, path, template), 422)
    assert "surrogate" in error["message"] or "64 bits" in error["message"], error


def test_no_job_was_written_by_a_refused_config(http) -> None:
    job_id = new_id()
    resp = post_raw(http, JOBS, '{"id": "%s", "config": {"n": @N}}'.replace("%s", job_id))
    assert_error(resp, 422)
    assert_error(http.get(f"{JOBS}/{job_id}"), 404)


def test_a_deeply_nested_prediction_fails_a_recursive_schema_instead_of_the_ingest(http) -> None:
    """A degenerate "[[[[..." output against a recursive JSON Schema used to overflow the
    validator's recursion (RecursionError → 500 for the whole batch)."""
    schema = {"type": "array", "items": {"$ref": "#"}}
    job = create_job(
        http, new_id(), config={"predictions": {"validators": {"json_schema": schema}}}
    )
    deep = "[" * 900 + "]" * 900
    rows = [
        {"epoch": 0, "step": 0, "sample_index": 0, "prompt": "p", "prediction": deep},
        {"epoch": 0, "step": 0, "sample_index": 1, "prompt": "p", "prediction": "[[], [[]]]"},
    ]
    resp = http.post(f"{PRED}/{job['id']}", json={"predictions": rows})
    assert resp.status_code == 200, resp.text[:500]
    stored = list_page(http, job["id"])["predictions"]
    assert [p["validation_pass"] for p in stored] == [False, True]
    assert stored[0]["validation_errors"][0]["validator"] in ("json_parse", "json_schema")


def test_big_integers_in_predictions_are_validated_exactly(http) -> None:
    """orjson reads integers beyond 64 bits as floats: 2**64 + 1 and 2**64 + 2 both became
    2.0**64, which is no multiple of 3 (2**64 + 2 is)."""
    schema = {"type": "integer", "multipleOf": 3}
    job = create_job(
        http, new_id(), config={"predictions": {"validators": {"json_schema": schema}}}
    )
    rows = [
        {"epoch": 0, "step": 0, "sample_index": i, "prompt": "p", "prediction": str(value)}
        for i, value in enumerate([2**64 + 2, 2**64 + 1])
    ]
    resp = http.post(f"{PRED}/{job['id']}", json={"predictions": rows})
    assert resp.status_code == 200, resp.text[:500]
    stored = list_page(http, job["id"])["predictions"]
    assert [p["validation_pass"] for p in stored] == [True, False]


def test_a_schema_ref_that_cannot_be_resolved_fails_rows_not_the_ingest(http) -> None:
    """A job whose JSON Schema `$ref`s something it does not hold (the server never fetches
    one) used to answer every later ingest with a 500."""
    schema = {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/a.json"}}}
    job = create_job(
        http, new_id(), config={"predictions": {"validators": {"json_schema": schema}}}
    )
    rows = [
        {"epoch": 0, "step": 0, "sample_index": i, "prompt": "p", "prediction": text}
        for i, text in enumerate(['{"a": 1}', '{"b": 1}'])
    ]
    resp = http.post(f"{PRED}/{job['id']}", json={"predictions": rows})
    assert resp.status_code == 200, resp.text[:500]
    stored = list_page(http, job["id"])["predictions"]
    assert [p["validation_pass"] for p in stored] == [False, True]
    assert "cannot be validated" in stored[0]["validation_errors"][0]["message"]


@pytest.mark.parametrize("value", [50446997, -3, 1.5, 0, 2**63 - 1])
def test_a_number_as_trace_input_is_stored_and_read_back(http, value) -> None:
    """SQLite gives JSON columns numeric affinity: a bare number came back as a number, and
    decoding it as JSON text was a 500."""
    model = new_id("m")
    resp = http.post("/api/analytics/traces", json={"model": model, "input": value})
    assert resp.status_code == 201, resp.text[:300]
    assert resp.json()["input"] == value
    traces = http.get("/api/analytics/traces", params={"model": model}).json()["traces"]
    assert [t["input"] for t in traces] == [value]
