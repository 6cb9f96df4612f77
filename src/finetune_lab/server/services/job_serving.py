"""How a training job's checkpoints are served: the stats of the calls whose model names the
job (models registered with `job_id`), in total and per checkpoint. The owner's alone."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.serving_tables import traces
from finetune_lab.server.services.analytics import _stats, _stats_row
from finetune_lab.server.services.jobs import owned_job


def job_serving(db: Database, principal: Principal, job_id: str) -> dict[str, Any]:
    """404 unless the caller owns the job; spans are the caller's own too (user_id first)."""
    with db.read() as conn:
        owned_job(conn, principal, job_id)
        t = traces.c
        named = conn.execute(
            select(t.model_id, t.model, t.step)
            .where(t.user_id == principal.user_id, t.job_id == job_id)
            .group_by(t.model_id, t.model, t.step)
        ).all()
    where = [traces.c.user_id == principal.user_id, traces.c.job_id == job_id]
    totals = _stats(db, where, traces.c.job_id)
    by_model = {row.g: row for row in _stats(db, where, traces.c.model_id)}
    names = {row.model_id: row for row in named}
    checkpoints = [
        {
            "model_id": model_id,
            "model": names[model_id].model if model_id in names else None,
            "step": names[model_id].step if model_id in names else None,
            **_stats_row(row),
        }
        for model_id, row in by_model.items()
    ]
    checkpoints.sort(key=lambda c: (c["step"] is None, c["step"] or 0, c["model"] or ""))
    return {
        "job_id": job_id,
        "totals": _stats_row(totals[0] if totals else None),
        "checkpoints": checkpoints,
    }
