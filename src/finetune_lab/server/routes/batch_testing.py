"""`/api/test-suites` and `/api/batch-testing`: suites of prompts, and runs that test a model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from finetune_lab.schema_serving import (
    BatchResults,
    BatchRunCancel,
    BatchRunRequest,
    BatchRunsList,
    BatchRunStarted,
    BatchRunStatus,
    TestSuite,
    TestSuiteCreate,
    TestSuiteDeleted,
    TestSuitesList,
)
from finetune_lab.server import upstream_dialect as dialect
from finetune_lab.server.deps import Db, Testing, Worker
from finetune_lab.server.responses import JSONBytesResponse
from finetune_lab.server.services import batch_runs, suites
from finetune_lab.server.upstream_dialect import UpstreamClient

suites_router = APIRouter(prefix="/api/test-suites", tags=["batch testing"])
runs_router = APIRouter(prefix="/api/batch-testing", tags=["batch testing"])

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A JSON array of items or JSONL (one item per line). Items: "
        "`prompt`|`input`|`question` or chat `messages`, and `expected`|`expected_answer`|"
        "`ground_truth`|`completion`|`output`|`answer`; a chat whose last message is the "
        "assistant's uses it as the expected answer.",
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


@suites_router.post("", status_code=201, response_model=TestSuite)
def create_suite(body: TestSuiteCreate, principal: Testing, db: Db) -> dict[str, Any]:
    return suites.create_suite(db, principal, body)


@suites_router.post("/upload", status_code=201, response_model=TestSuite, openapi_extra=UPLOAD_BODY)
async def upload_suite(
    request: Request,
    name: str = Query(min_length=1, max_length=512, pattern=r"^[^\x00]*$"),
    description: str | None = Query(None, max_length=512, pattern=r"^[^\x00]*$"),
    *,
    principal: Testing,
    db: Db,
) -> JSONBytesResponse:
    """Create a suite from an uploaded JSON or JSONL file (the body)."""
    body = suites.validate_upload(name, description, await request.body())
    suite = await run_in_threadpool(suites.create_suite, db, principal, body)
    return JSONBytesResponse(suite, status_code=201)


@suites_router.get("", response_model=TestSuitesList)
def list_suites(principal: Testing, db: Db) -> dict[str, Any]:
    return suites.list_suites(db, principal)


@suites_router.get("/{suite_id}", response_model=TestSuite)
def get_suite(suite_id: str, principal: Testing, db: Db) -> JSONBytesResponse:
    return JSONBytesResponse(suites.get_suite(db, principal, suite_id))


@suites_router.delete("/{suite_id}", response_model=TestSuiteDeleted)
def delete_suite(suite_id: str, principal: Testing, db: Db) -> dict[str, Any]:
    return suites.delete_suite(db, principal, suite_id)


@runs_router.post("/run", status_code=202, response_model=BatchRunStarted)
def run(
    body: BatchRunRequest,
    upstream: UpstreamClient,
    principal: Testing,
    db: Db,
    worker: Worker,
) -> dict[str, Any] | JSONBytesResponse:
    """Queue a run of the suite against the model; it executes in the background."""
    started = batch_runs.submit(db, principal, body.config)
    worker.wake()
    if upstream:
        return JSONBytesResponse(dialect.batch_started(started), status_code=202)
    return started


@runs_router.get("/status/{test_run_id}", response_model=BatchRunStatus)
def status(
    test_run_id: str, upstream: UpstreamClient, principal: Testing, db: Db
) -> JSONBytesResponse:
    run = batch_runs.status(db, principal, test_run_id)
    return JSONBytesResponse(dialect.batch_status(run) if upstream else run)


@runs_router.get("/results/{test_run_id}", response_model=BatchResults)
def results(
    test_run_id: str,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
    *,
    principal: Testing,
    db: Db,
) -> JSONBytesResponse:
    """Answers written so far (all of them once the run is over), in suite order, scored."""
    page = batch_runs.results(db, principal, test_run_id, limit=limit, offset=offset)
    return JSONBytesResponse(page)


@runs_router.post("/cancel", response_model=BatchRunStatus)
def cancel(
    body: BatchRunCancel, upstream: UpstreamClient, principal: Testing, db: Db
) -> JSONBytesResponse:
    """Stop a queued or running run: no new prompt starts; already finished answers stay."""
    run = batch_runs.cancel(db, principal, body.test_run_id)
    return JSONBytesResponse(dialect.batch_cancelled(run) if upstream else run)


@runs_router.get("/runs", response_model=BatchRunsList)
def list_runs(
    limit: int = Query(20, ge=1, le=100),
    *,
    principal: Testing,
    db: Db,
) -> JSONBytesResponse:
    return JSONBytesResponse(batch_runs.list_runs(db, principal, limit=limit))
