"""What a job's judges have done: scores, failures and pending rows, over current row versions.

An outcome counts only for the row version it graded (`rows_at` = the row's `created_at`): a
row re-sent since is pending again until its new version is graded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select

from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.serving_tables import judge_results, judge_runs
from finetune_lab.server.db.tables import predictions, round_rollups
from finetune_lab.server.services.jobs import owned_job
from finetune_lab.server.services.judges import judges_of
from finetune_lab.server.services.rows import plain

RUN_STATES = ("queued", "running", "completed", "cancelled", "failed")


def _current() -> Any:
    """judge_results joined to the row version each outcome is for."""
    j, p = judge_results.c, predictions.c
    return judge_results.join(
        predictions,
        and_(
            p.job_id == j.job_id,
            p.step == j.step,
            p.sample_index == j.sample_index,
            p.created_at == j.rows_at,
        ),
    )


def judge_status(
    db: Database, principal: Principal, job_id: str, *, limit: int, offset: int
) -> dict[str, Any]:
    j, r = judge_results.c, judge_runs.c
    with db.read() as conn:
        job = owned_job(conn, principal, job_id)
        rows = int(
            conn.scalar(
                select(func.coalesce(func.sum(round_rollups.c.sample_count), 0)).where(
                    round_rollups.c.job_id == job_id
                )
            )
            or 0
        )
        counts: dict[tuple[str, str], int] = {
            (name, status): int(n)
            for name, status, n in conn.execute(
                select(j.judge, j.status, func.count())
                .select_from(_current())
                .where(j.job_id == job_id)
                .group_by(j.judge, j.status)
            )
        }
        runs = {state: 0 for state in RUN_STATES}
        for status, n in conn.execute(
            select(r.status, func.count()).where(r.job_id == job_id).group_by(r.status)
        ):
            runs[status] = int(n)
        stopped = conn.scalar(
            select(r.error)
            .where(r.job_id == job_id, r.status.in_(("cancelled", "failed")))
            .order_by(r.finished_at.desc())
            .limit(1)
        )
        failed = (j.job_id == job_id, j.status == "failed")
        failures_total = int(
            conn.scalar(select(func.count()).select_from(_current()).where(*failed)) or 0
        )
        failures = conn.execute(
            select(
                j.judge,
                j.epoch,
                j.step,
                j.sample_index,
                j.error,
                j.answer,
                j.attempts,
                j.updated_at,
            )
            .select_from(_current())
            .where(*failed)
            .order_by(j.step, j.sample_index, j.judge)
            .limit(limit)
            .offset(offset)
        ).all()
    summaries = []
    for judge in judges_of(job.config):
        graded = counts.get((judge.name, "graded"), 0)
        failed_n = counts.get((judge.name, "failed"), 0)
        summaries.append(
            {
                "name": judge.name,
                "metric": judge.metric,
                "model": judge.model,
                "min": judge.min,
                "max": judge.max,
                "graded": graded,
                "failed": failed_n,
                "pending": max(0, rows - graded - failed_n),
            }
        )
    return {
        "job_id": job_id,
        "judges": summaries,
        "runs": runs,
        "stopped_reason": stopped,
        "failures": [plain(row) for row in failures],
        "failures_total": failures_total,
        "limit": limit,
        "offset": offset,
    }
