"""Batch test runs as the API sees them: submit, status, results, cancel.

A run is a row in `test_runs` (status queued|running|completed|failed|cancelled); the
`BatchWorker` executes it. Cancelling flips the row; the worker notices before its next prompt.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, case, func, select, update

from finetune_lab.schema_serving import BatchResult, BatchRunConfig
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.serving_tables import test_run_results, test_runs
from finetune_lab.server.errors import APIError, not_found
from finetune_lab.server.services import model_registry, suites
from finetune_lab.server.services.rows import plain
from finetune_lab.server.services.tokens import utcnow

ACTIVE = ("queued", "running")
RESULT_COLUMNS = tuple(
    test_run_results.c["position" if name == "index" else name].label(name)
    for name in BatchResult.model_fields
)


def submit(db: Database, principal: Principal, config: BatchRunConfig) -> dict[str, Any]:
    run_id = f"run_{uuid.uuid4().hex}"
    with db.write() as conn:
        model = model_registry.owned_model(conn, principal, config.model_id)
        suite = suites.owned_suite(conn, principal, config.test_suite_id)
        total = min(config.prompt_limit or suite.item_count, suite.item_count)
        stored = config.model_dump()
        stored["model_id"] = model.id
        conn.execute(
            test_runs.insert().values(
                id=run_id,
                user_id=principal.user_id,
                model_id=model.id,
                test_suite_id=suite.id,
                status="queued",
                total_prompts=total,
                config=stored,
                attempts=0,
                created_at=utcnow(),
            )
        )
    return {
        "test_run_id": run_id,
        "status": "queued",
        "total_prompts": total,
        # The upstream SDKs' reading of the same (`test_id`, `results.*`).
        "test_id": run_id,
        "success": True,
        "results": {"total_prompts": total, "successful": 0, "failed": 0},
    }


def _owned_run(conn: Connection, principal: Principal, run_id: str) -> Any:
    row = conn.execute(
        select(test_runs).where(test_runs.c.id == run_id, test_runs.c.user_id == principal.user_id)
    ).first()
    if row is None:
        raise not_found("test run")
    return row


def _summary(conn: Connection, run_id: str) -> dict[str, Any]:
    r = test_run_results.c
    row = conn.execute(
        select(
            func.count().label("done"),
            func.count(r.error).label("failed"),
            func.count(r.exact_match).label("scored"),
            func.avg(r.exact_match).label("avg_exact_match"),
            func.avg(r.char_error_rate).label("avg_char_error_rate"),
            func.avg(r.length_ratio).label("avg_length_ratio"),
            func.avg(r.word_overlap).label("avg_word_overlap"),
            func.avg(case((r.error.is_(None), r.latency_ms))).label("avg_latency_ms"),
            func.coalesce(func.sum(r.total_tokens), 0).label("total_tokens"),
        ).where(r.run_id == run_id)
    ).one()
    values = plain(row)
    for name, value in values.items():
        if value is not None and name.startswith("avg_"):
            values[name] = float(value)
    return values


def _status_of(conn: Connection, row: Any) -> dict[str, Any]:
    summary = _summary(conn, row.id)
    done, failed = int(summary.pop("done")), int(summary.pop("failed"))
    return {
        "test_run_id": row.id,
        "test_id": row.id,
        "status": row.status,
        "model_id": row.model_id,
        "test_suite_id": row.test_suite_id,
        "total_prompts": row.total_prompts,
        "completed_prompts": done - failed,
        "failed_prompts": failed,
        "progress": done / row.total_prompts if row.total_prompts else 1.0,
        "config": row.config,
        "error": row.error,
        "attempts": row.attempts,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "summary": {**summary, "total_tokens": int(summary["total_tokens"])},
    }


def status(db: Database, principal: Principal, run_id: str) -> dict[str, Any]:
    with db.read() as conn:
        return _status_of(conn, _owned_run(conn, principal, run_id))


def results(
    db: Database, principal: Principal, run_id: str, *, limit: int, offset: int
) -> dict[str, Any]:
    with db.read() as conn:
        run = _owned_run(conn, principal, run_id)
        state = _status_of(conn, run)
        rows = conn.execute(
            select(*RESULT_COLUMNS)
            .where(test_run_results.c.run_id == run_id)
            .order_by(test_run_results.c.position)
            .limit(limit)
            .offset(offset)
        ).all()
    done = state["completed_prompts"] + state["failed_prompts"]
    return {
        "test_run_id": run_id,
        "status": run.status,
        "total": done,
        "limit": limit,
        "offset": offset,
        "results": [plain(row) for row in rows],
        "summary": state["summary"],
    }


def cancel(db: Database, principal: Principal, run_id: str) -> dict[str, Any]:
    with db.write() as conn:
        run = _owned_run(conn, principal, run_id)
        if run.status not in ACTIVE:
            raise APIError(409, f"test run {run_id} is already {run.status}")
        conn.execute(
            update(test_runs)
            .where(test_runs.c.id == run_id)
            .values(
                status="cancelled",
                finished_at=utcnow(),
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        return _status_of(conn, _owned_run(conn, principal, run_id))


def list_runs(db: Database, principal: Principal, *, limit: int) -> dict[str, Any]:
    with db.read() as conn:
        rows = conn.execute(
            select(test_runs)
            .where(test_runs.c.user_id == principal.user_id)
            .order_by(test_runs.c.created_at.desc(), test_runs.c.id)
            .limit(limit)
        ).all()
        return {"test_runs": [_status_of(conn, row) for row in rows]}
