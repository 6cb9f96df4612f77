"""Shared helpers for the live-server HTTP tests (plain functions, no fixtures)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

# docs/CONTRACT.md "Error body": the machine code for each status.
ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
}

PRED = "/api/training/predictions"
JOBS = "/api/training/jobs"


def assert_error(resp: httpx.Response, status: int, error_type: str | None = None) -> dict:
    """The response is `status` with exactly `{"error": {"type", "message"[, "details"]}}`."""
    assert resp.status_code == status, (
        f"expected {status}, got {resp.status_code}: {resp.text[:1000]}"
    )
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert {"type", "message"} <= set(error) <= {"type", "message", "details"}, body
    assert isinstance(error["type"], str), body
    assert isinstance(error["message"], str), body
    assert error["message"].strip(), body
    expected_type = error_type or ERROR_TYPES.get(status)
    if expected_type is not None:
        assert error["type"] == expected_type, body
    return error


def assert_not_500(resp: httpx.Response) -> None:
    """Bad input must never become a 500; any error must have the standard body."""
    assert resp.status_code < 500, f"{resp.status_code}: {resp.text[:1000]}"
    if resp.status_code >= 400:
        assert_error(resp, resp.status_code)


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def row(
    epoch: int,
    step: int,
    sample_index: int,
    prediction: str = "p",
    ground_truth: str | None = "g",
    prompt: str | None = None,
    **extra: Any,
) -> dict:
    item: dict[str, Any] = {
        "epoch": epoch,
        "step": step,
        "sample_index": sample_index,
        "prompt": prompt if prompt is not None else f"prompt {sample_index}",
        "prediction": prediction,
        "ground_truth": ground_truth,
    }
    item.update(extra)
    return item


def create_job(
    http: httpx.Client, job_id: str | None = None, expect: int = 201, **body: Any
) -> dict:
    if job_id is not None:
        body["id"] = job_id
    resp = http.post(JOBS, json=body)
    assert resp.status_code == expect, resp.text
    return resp.json()


def ingest(http: httpx.Client, job_id: str, rows: list[dict], expect: int = 200) -> dict:
    resp = http.post(f"{PRED}/{job_id}", json={"predictions": rows})
    assert resp.status_code == expect, resp.text[:2000]
    return resp.json()


def list_page(http: httpx.Client, job_id: str, **params: Any) -> dict:
    resp = http.get(f"{PRED}/{job_id}", params=params)
    assert resp.status_code == 200, resp.text[:2000]
    return resp.json()


def fetch_all(http: httpx.Client, job_id: str, **params: Any) -> list[dict]:
    """Every row of the job (with filters), walking the cursor."""
    params = {"limit": 1000, **params}
    rows: list[dict] = []
    for _ in range(10_000):
        page = list_page(http, job_id, **params)
        rows.extend(page["predictions"])
        if not page.get("next_cursor"):
            return rows
        params["cursor"] = page["next_cursor"]
    raise AssertionError("cursor pagination did not terminate")


def key_of(p: dict) -> tuple[int, int, int]:
    return (p["epoch"], p["step"], p["sample_index"])
