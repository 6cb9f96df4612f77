from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response

from finetune_lab.schema import MAX_INT, Job, JobCreate, JobDeleted, JobPatch, JobsPage, JobStatus
from finetune_lab.server.deps import Db, Scoring, Training
from finetune_lab.server.services import jobs as service

router = APIRouter(prefix="/api/training/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=201,
    response_model=Job,
    responses={200: {"model": Job, "description": "resumed an existing job"}},
)
def create_job(
    body: JobCreate,
    response: Response,
    principal: Training,
    db: Db,
    scoring: Scoring,
) -> dict[str, Any]:
    job, created = service.create_job(db, principal, body, scoring)
    if not created:
        response.status_code = 200
    return job


@router.get("", response_model=JobsPage)
def list_jobs(
    status: JobStatus | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_INT),
    *,
    principal: Training,
    db: Db,
) -> dict[str, Any]:
    return service.list_jobs(db, principal, status=status, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: str, principal: Training, db: Db) -> dict[str, Any]:
    return service.get_job(db, principal, job_id)


@router.patch("/{job_id}", response_model=Job)
def update_job(
    job_id: str,
    body: JobPatch,
    principal: Training,
    db: Db,
) -> dict[str, Any]:
    return service.update_job(db, principal, job_id, body)


@router.delete("/{job_id}", response_model=JobDeleted)
def delete_job(job_id: str, principal: Training, db: Db) -> dict[str, Any]:
    return service.delete_job(db, principal, job_id)


@router.post("/{job_id}/token", response_model=Job)
def rotate_job_token(job_id: str, principal: Training, db: Db) -> dict[str, Any]:
    """A new `job_token` for the job, bound to the calling key; the previous token is dead."""
    return service.rotate_job_token(db, principal, job_id)


@router.delete("/{job_id}/token", response_model=Job)
def revoke_job_token(job_id: str, principal: Training, db: Db) -> dict[str, Any]:
    """End the job's token now (its data stays); `POST .../token` issues a new one."""
    return service.revoke_job_token(db, principal, job_id)
