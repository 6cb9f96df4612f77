"""Training jobs: create or resume, list, update, delete, each confined to its owner.

A job's token is bound to the API key that created the job (or last rotated the token):
it works only while that key does, and rotating or revoking it ends the old token at once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from finetune_lab._ids import time_ordered_hex
from finetune_lab.schema import JobCreate, JobPatch, is_valid_job_id
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.job_lock import lock_job
from finetune_lab.server.db.serving_tables import judge_results, judge_runs
from finetune_lab.server.db.tables import jobs, predictions, round_rollups, stream_events
from finetune_lab.server.errors import APIError, not_found, validation_error
from finetune_lab.server.services import judges, samples, texts
from finetune_lab.server.services.scoring_pool import SchemaCheckTimeout, ScoringPool
from finetune_lab.server.services.tokens import JOB_TOKEN_PREFIX, hash_secret, new_secret, utcnow

JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.name,
    jobs.c.model_name,
    jobs.c.status,
    jobs.c.config,
    jobs.c.created_at,
    jobs.c.updated_at,
)


def owned_job(conn: Connection, principal: Principal, job_id: str) -> Any:
    """The job row if the caller owns it; 404 otherwise (never reveal that it exists)."""
    if not is_valid_job_id(job_id):
        raise not_found()
    row = conn.execute(
        select(*JOB_COLUMNS).where(jobs.c.id == job_id, jobs.c.user_id == principal.user_id)
    ).first()
    if row is None:
        raise not_found()
    return row


def _stats(conn: Connection, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not job_ids:
        return {}
    query = (
        select(
            round_rollups.c.job_id,
            func.sum(round_rollups.c.sample_count).label("prediction_count"),
            func.count().label("round_count"),
            func.max(round_rollups.c.epoch).label("latest_epoch"),
            func.max(round_rollups.c.step).label("latest_step"),
        )
        .where(round_rollups.c.job_id.in_(job_ids))
        .group_by(round_rollups.c.job_id)
    )
    return {row.job_id: dict(row._mapping) for row in conn.execute(query)}


def _to_wire(
    row: Any, stats: dict[str, Any] | None, job_token: str | None = None
) -> dict[str, Any]:
    job = dict(row._mapping)
    stats = stats or {}
    job["prediction_count"] = int(stats.get("prediction_count") or 0)
    job["round_count"] = int(stats.get("round_count") or 0)
    job["latest_epoch"] = stats.get("latest_epoch")
    job["latest_step"] = stats.get("latest_step")
    job["job_token"] = job_token
    return job


def _config_problem(scoring: ScoringPool, config: dict[str, Any]) -> str | None:
    """Checked in a scoring worker, within a time budget: a huge schema is refused, it cannot
    stall the server."""
    try:
        return scoring.check_config(config)
    except SchemaCheckTimeout:
        budget = scoring.settings.schema_check_s
        return (
            "config.predictions.validators.json_schema could not be checked within "
            f"{budget:g} s: the schema is too large or too complex"
        )


def create_job(
    db: Database, principal: Principal, body: JobCreate, scoring: ScoringPool
) -> tuple[dict[str, Any], bool]:
    """Returns (job, created). An existing id of the caller resumes; another user's is 409."""
    config = body.config or {}
    problem = _config_problem(scoring, config)
    if problem:
        raise validation_error(
            problem,
            [
                {
                    "loc": ["config", "predictions", "validators"],
                    "message": problem,
                    "type": "value_error",
                }
            ],
        )
    if judges.raw_specs(config) is not None:
        with db.read() as conn:
            judges.check_config(conn, principal, config)
    job_id = body.id or f"job_{time_ordered_hex()}"
    with db.write() as conn:
        existing = conn.execute(select(jobs.c.user_id).where(jobs.c.id == job_id)).first()
        if existing is not None:
            if existing.user_id != principal.user_id:
                raise APIError(409, f"job id {job_id!r} is taken")
            row = owned_job(conn, principal, job_id)
            return _to_wire(row, _stats(conn, [job_id]).get(job_id)), False
        token = new_secret(JOB_TOKEN_PREFIX)
        now = utcnow()
        conn.execute(
            insert(jobs).values(
                id=job_id,
                user_id=principal.user_id,
                name=body.name,
                model_name=body.model_name,
                status="pending",
                config=config,
                job_token_hash=hash_secret(token),
                api_key_id=principal.api_key_id,
                created_at=now,
                updated_at=now,
            )
        )
        row = owned_job(conn, principal, job_id)
    return _to_wire(row, None, token), True


def get_job(db: Database, principal: Principal, job_id: str) -> dict[str, Any]:
    with db.read() as conn:
        row = owned_job(conn, principal, job_id)
        return _to_wire(row, _stats(conn, [job_id]).get(job_id))


def list_jobs(
    db: Database, principal: Principal, *, status: str | None, limit: int, offset: int
) -> dict[str, Any]:
    where = [jobs.c.user_id == principal.user_id]
    if status is not None:
        where.append(jobs.c.status == status)
    with db.read() as conn:
        total = conn.scalar(select(func.count()).select_from(jobs).where(*where)) or 0
        rows = conn.execute(
            select(*JOB_COLUMNS)
            .where(*where)
            .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        stats = _stats(conn, [row.id for row in rows])
    return {
        "jobs": [_to_wire(row, stats.get(row.id)) for row in rows],
        "total": int(total),
        "limit": limit,
        "offset": offset,
    }


def update_job(db: Database, principal: Principal, job_id: str, patch: JobPatch) -> dict[str, Any]:
    values = patch.model_dump(exclude_unset=True, exclude_none=True)
    with db.write() as conn:
        owned_job(conn, principal, job_id)
        if values:
            conn.execute(
                update(jobs).where(jobs.c.id == job_id).values(**values, updated_at=utcnow())
            )
        row = owned_job(conn, principal, job_id)
        return _to_wire(row, _stats(conn, [job_id]).get(job_id))


def rotate_job_token(db: Database, principal: Principal, job_id: str) -> dict[str, Any]:
    """A new token for the job, bound to the caller's key; the old one stops working."""
    token = new_secret(JOB_TOKEN_PREFIX)
    _set_token(db, principal, job_id, hash_secret(token), principal.api_key_id)
    return get_job(db, principal, job_id) | {"job_token": token}


def revoke_job_token(db: Database, principal: Principal, job_id: str) -> dict[str, Any]:
    """The job keeps its data; its token stops working until rotated."""
    _set_token(db, principal, job_id, None, None)
    return get_job(db, principal, job_id)


def _set_token(
    db: Database, principal: Principal, job_id: str, token_hash: str | None, key_id: int | None
) -> None:
    with db.write() as conn:
        owned_job(conn, principal, job_id)
        conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(job_token_hash=token_hash, api_key_id=key_id, updated_at=utcnow())
        )


def revoke_job_token_by_id(db: Database, job_id: str) -> bool:
    """Operator revocation (the CLI): any user's job; False when it has no live token."""
    with db.write() as conn:
        result = conn.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.job_token_hash.is_not(None))
            .values(job_token_hash=None, api_key_id=None, updated_at=utcnow())
        )
    return bool(result.rowcount)


def delete_job(db: Database, principal: Principal, job_id: str) -> dict[str, Any]:
    with db.write() as conn:
        owned_job(conn, principal, job_id)
        lock_job(conn, job_id)  # an ingest in flight commits first, then its rows go too
        removed = conn.execute(delete(predictions).where(predictions.c.job_id == job_id)).rowcount
        texts.delete_job_texts(conn, job_id)
        samples.delete_job_samples(conn, job_id)
        conn.execute(delete(round_rollups).where(round_rollups.c.job_id == job_id))
        conn.execute(delete(stream_events).where(stream_events.c.job_id == job_id))
        # Grading stops: the worker's next write finds its run gone (and ends it).
        conn.execute(delete(judge_runs).where(judge_runs.c.job_id == job_id))
        conn.execute(delete(judge_results).where(judge_results.c.job_id == job_id))
        conn.execute(delete(jobs).where(jobs.c.id == job_id))
    return {"job_id": job_id, "deleted": True, "predictions_deleted": int(removed)}
