"""Uploading a job's spool: one routine shared by the live sender and `finetune-lab sync`."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from finetune_lab.client import FinetuneLabClient
from finetune_lab.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    ConflictError,
    FinetuneLabError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from finetune_lab.training.spool import JobSpool

logger = logging.getLogger("finetune_lab.training")


class Outcome(enum.Enum):
    DONE = "done"  # nothing left to send
    RETRY = "retry"  # the server is unreachable or busy: try again later
    BLOCKED = "blocked"  # retrying cannot help (bad credentials, foreign job id)


@dataclass
class UploadReport:
    outcome: Outcome
    batches: int = 0
    rows: int = 0
    rejected: int = 0
    error: str | None = None


def _transient(exc: FinetuneLabError) -> bool:
    if isinstance(exc, APIConnectionError | RateLimitError):
        return True
    return isinstance(exc, APIStatusError) and (exc.status_code or 0) >= 500


def ensure_job(
    client: FinetuneLabClient, spool: JobSpool, job: dict[str, Any] | None = None
) -> None:
    """Create the job on the server (or find it there: creating an own id again resumes it).

    `job` stands in for the spool's record when the disk refused to write it."""
    meta = spool.read_meta()
    job = meta.get("job") or job or {"id": spool.job_id}
    created = client.jobs.create(
        id=spool.job_id,
        name=job.get("name"),
        model_name=job.get("model_name"),
        config=job.get("config"),
    )
    if created.job_token:
        try:
            spool.update_meta(job_token=created.job_token)
        except OSError as exc:  # only `sync` without an API key needs it: not worth failing for
            logger.warning("finetune-lab: cannot keep the job token in the spool (%s)", exc)


def upload(
    client: FinetuneLabClient,
    spool: JobSpool,
    *,
    create_job: bool = True,
    job: dict[str, Any] | None = None,
) -> UploadReport:
    """Send every pending batch, oldest first, removing each once the server has stored it."""
    report = UploadReport(Outcome.DONE)
    try:
        if create_job:
            ensure_job(client, spool, job)
        for path in spool.pending():
            try:
                rows = spool.read(path)
            except FileNotFoundError:
                continue  # uploaded meanwhile by another process
            except ValueError as exc:  # a torn file cannot happen (atomic writes), but be safe
                spool.reject(path, f"unreadable spool file: {exc}")
                report.rejected += 1
                continue
            try:
                client.training_predictions.create(spool.job_id, rows)
            except (AuthenticationError, PermissionDeniedError, ConflictError, NotFoundError):
                raise
            except APIStatusError as exc:
                if _transient(exc):
                    raise
                spool.reject(path, str(exc))  # the server refuses this batch for good
                report.rejected += 1
                logger.error("finetune-lab: server refused a spooled batch %s: %s", path, exc)
                continue
            spool.delivered(path)
            report.batches += 1
            report.rows += len(rows)
    except FinetuneLabError as exc:
        report.error = str(exc)
        # Not transient, hence BLOCKED: bad credentials, a foreign job id, or a job that
        # vanished (deleted) and must not be resurrected.
        report.outcome = Outcome.RETRY if _transient(exc) else Outcome.BLOCKED
    return report


def mark_finished(client: FinetuneLabClient, spool: JobSpool, *, finished: bool = False) -> bool:
    """Once a finished run's spool is empty, mark its job completed and drop the spool.

    `finished` says the run ended even when the disk refused to record it in the spool.
    Returns True when the job was marked completed."""
    meta = spool.read_meta()
    if not (finished or meta.get("finished")) or spool.pending():
        return False
    client.jobs.update(spool.job_id, status="completed")
    spool.remove_if_done()
    return True
