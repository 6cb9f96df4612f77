"""The write path: validate a batch, score it, upsert it and refresh its rounds' rollups, atomically."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pydantic
from sqlalchemy import Connection, case, delete, func, insert, literal, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Insert

from finetune_lab.schema import MAX_BATCH_ITEMS, PredictionIn, PredictionsBatch
from finetune_lab.scoring import Validators, score
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import jobs, predictions, round_rollups
from finetune_lab.server.errors import APIError, not_found
from finetune_lab.server.services.tokens import utcnow

KEY_COLUMNS = ("job_id", "step", "sample_index")
_UPSERTS: dict[str, Insert] = {}


def parse_batch(body: bytes) -> list[PredictionIn]:
    """Bytes → validated items; one bad item rejects the batch with its index in the message."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("predictions"), list):
        raise APIError(422, 'body must be an object {"predictions": [...]}', details=[
            {"loc": ["predictions"], "message": "a list is required", "type": "list_type"}
        ])
    count = len(data["predictions"])
    if count > MAX_BATCH_ITEMS:
        raise APIError(413, f"{count} predictions in one batch; at most {MAX_BATCH_ITEMS} allowed")
    try:
        return PredictionsBatch.model_validate(data).predictions
    except pydantic.ValidationError as exc:
        details = [
            {"loc": list(err["loc"]), "message": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False)
        ]
        first = details[0]["loc"]
        if len(first) >= 2 and first[0] == "predictions" and isinstance(first[1], int):
            field = ".".join(str(part) for part in first[2:]) or "item"
            message = f"predictions[{first[1]}] {field}: {details[0]['message']}"
        else:
            message = f"{'.'.join(map(str, first))}: {details[0]['message']}"
        if len(details) > 1:
            message += f" (and {len(details) - 1} more errors)"
        raise APIError(422, message, details=details) from None


def _scored_rows(
    items: list[PredictionIn], job_id: str, user_id: int, validators: Validators | None
) -> list[dict[str, Any]]:
    # Same (step, sample_index) twice in one batch: the last one wins.
    latest: dict[tuple[int, int], PredictionIn] = {}
    for item in items:
        latest[(item.step, item.sample_index)] = item
    now = utcnow()
    rows = []
    for item in latest.values():
        row = dict(item.__dict__)
        scores = score(item.prediction, item.ground_truth)
        row["exact_match"], row["char_error_rate"], row["length_ratio"], row["word_overlap"] = scores
        if validators is None:
            row["validation_pass"] = row["validation_kind"] = row["validation_errors"] = None
        else:
            result = validators(item.prediction)
            row["validation_pass"] = result.passed
            row["validation_kind"] = result.kind
            row["validation_errors"] = result.errors
        row["job_id"] = job_id
        row["user_id"] = user_id
        row["created_at"] = now
        rows.append(row)
    return rows


def _upsert_statement(dialect: str) -> Insert:
    if dialect not in _UPSERTS:
        insert_fn = sqlite.insert if dialect == "sqlite" else postgresql.insert
        stmt = insert_fn(predictions)
        changes = {
            column.name: stmt.excluded[column.name]
            for column in predictions.c
            if column.name not in (*KEY_COLUMNS, "id")
        }
        _UPSERTS[dialect] = stmt.on_conflict_do_update(index_elements=list(KEY_COLUMNS), set_=changes)
    return _UPSERTS[dialect]


def _existing_keys(conn: Connection, job_id: str, rows: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """Which of the batch's (step, sample_index) already exist: one index range per round."""
    bounds: dict[int, list[int]] = {}
    for row in rows:
        lo_hi = bounds.setdefault(row["step"], [row["sample_index"], row["sample_index"]])
        lo_hi[0] = min(lo_hi[0], row["sample_index"])
        lo_hi[1] = max(lo_hi[1], row["sample_index"])
    found: set[tuple[int, int]] = set()
    for step, (lo, hi) in bounds.items():
        result = conn.execute(
            select(predictions.c.sample_index).where(
                predictions.c.job_id == job_id,
                predictions.c.step == step,
                predictions.c.sample_index.between(lo, hi),
            )
        )
        found.update((step, sample_index) for (sample_index,) in result)
    return found


def refresh_rollups(conn: Connection, job_id: str, steps: list[int]) -> None:
    """Recompute the rollup rows of the given rounds from their predictions (exact sums)."""
    p = predictions.c
    in_rounds = (p.job_id == job_id, p.step.in_(steps))
    conn.execute(delete(round_rollups).where(round_rollups.c.job_id == job_id, round_rollups.c.step.in_(steps)))
    aggregate = (
        select(
            literal(job_id),
            p.step,
            p.epoch,
            func.count(),
            func.sum(p.exact_match),
            func.count(p.exact_match),
            func.sum(p.char_error_rate),
            func.count(p.char_error_rate),
            func.min(p.char_error_rate),
            func.max(p.char_error_rate),
            func.sum(p.length_ratio),
            func.count(p.length_ratio),
            func.sum(p.word_overlap),
            func.count(p.word_overlap),
            func.coalesce(func.sum(case((p.validation_pass.is_(True), 1), else_=0)), 0),
            func.count(p.validation_pass),
        )
        .where(*in_rounds)
        .group_by(p.step, p.epoch)
    )
    r = round_rollups.c
    target = [r.job_id, r.step, r.epoch, r.sample_count, r.em_sum, r.em_n, r.cer_sum, r.cer_n,
              r.cer_min, r.cer_max, r.lr_sum, r.lr_n, r.wo_sum, r.wo_n, r.vp_pass, r.vp_n]
    conn.execute(insert(round_rollups).from_select(target, aggregate))

    custom: dict[tuple[int, int], dict[str, list[float]]] = defaultdict(dict)
    for step, epoch, metrics in conn.execute(select(p.step, p.epoch, p.metrics).where(*in_rounds, p.metrics.is_not(None))):
        sums = custom[(step, epoch)]
        for name, value in metrics.items():
            total = sums.setdefault(name, [0.0, 0])
            total[0] += value
            total[1] += 1
    for (step, epoch), sums in custom.items():
        conn.execute(
            update(round_rollups)
            .where(r.job_id == job_id, r.step == step, r.epoch == epoch)
            .values(metrics=sums)
        )


def ingest(db: Database, principal: Principal, job_id: str, items: list[PredictionIn]) -> dict[str, Any]:
    if principal.job_id is not None and principal.job_id != job_id:
        raise APIError(403, "this job token belongs to another job")
    with db.write() as conn:
        if db.is_postgres:
            # Writers of one job take turns, so the rollup refresh sees every committed row.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:job_id, 0))"), {"job_id": job_id})
        job = conn.execute(
            select(jobs.c.config).where(jobs.c.id == job_id, jobs.c.user_id == principal.user_id)
        ).first()
        if job is None:
            raise not_found()
        if not items:
            return {"job_id": job_id, "accepted": 0, "created": 0, "updated": 0}
        rows = _scored_rows(items, job_id, principal.user_id, Validators.from_config(job.config))
        existing = _existing_keys(conn, job_id, rows)
        conn.execute(_upsert_statement(conn.dialect.name), rows)
        refresh_rollups(conn, job_id, sorted({row["step"] for row in rows}))
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(
                updated_at=utcnow(),
                status=case((jobs.c.status == "pending", "running"), else_=jobs.c.status),
            )
        )
    updated = sum(1 for row in rows if (row["step"], row["sample_index"]) in existing)
    return {"job_id": job_id, "accepted": len(items), "created": len(rows) - updated, "updated": updated}
