"""The sample by round matrix of one score: which prompts a run learned, when, and which it never
did. The page of samples (by sample_index) and their count come from `job_samples` (kept at
ingest), the cells from one query over the page's sample_index range in every round (on the
(job_id, step, sample_index) unique index, or PostgreSQL's planner takes (job_id, sample_index)):
a page costs O(page x rounds), never O(job)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import predictions, round_rollups
from finetune_lab.server.errors import validation_error
from finetune_lab.server.services import samples
from finetune_lab.server.services.jobs import owned_job

SCORE_COLUMNS = ("exact_match", "char_error_rate", "length_ratio", "word_overlap")
BUILT_IN = (*SCORE_COLUMNS, "validation_pass")
CUSTOM_PREFIX = "metrics."  # names a custom metric explicitly (one called like a built-in)


def _custom_names(conn: Connection, job_id: str) -> set[str]:
    """Custom metric names that have values in this job: read from the rollups, O(rounds)."""
    r = round_rollups.c
    names: set[str] = set()
    for metrics in conn.scalars(
        select(r.metrics).where(r.job_id == job_id, r.metrics.is_not(None))
    ):
        names.update(metrics)
    return names


def _resolve(conn: Connection, job_id: str, metric: str) -> tuple[str | None, str | None]:
    """(built-in column, None) or (None, custom name); 422 for a metric this job does not have."""
    if metric in BUILT_IN:
        return metric, None
    name = metric.removeprefix(CUSTOM_PREFIX)
    if name in _custom_names(conn, job_id):
        return None, name
    raise validation_error(
        f"unknown metric {metric!r}: use one of {', '.join(BUILT_IN)}, or a custom metric "
        "of this job (metrics.<name> for one named like a built-in)",
        [{"loc": ["query", "metric"], "message": "unknown metric", "type": "value_error"}],
    )


def _sample_page(conn: Connection, job_id: str, limit: int, offset: int) -> tuple[list[int], int]:
    """The page's sample indexes and the job's count of them (kept at ingest: O(page))."""
    return samples.page(conn, job_id, limit, offset)


def _value(raw: Any, custom: str | None) -> float | None:
    if custom is not None:
        value = (raw or {}).get(custom)
        return None if value is None else float(value)
    if raw is None:
        return None
    return float(raw)  # validation_pass: 1.0 or 0.0


def matrix(
    db: Database, principal: Principal, job_id: str, metric: str, *, limit: int, offset: int
) -> dict[str, Any]:
    p, r = predictions.c, round_rollups.c
    with db.read() as conn:
        owned_job(conn, principal, job_id)
        column, custom = _resolve(conn, job_id, metric)
        rounds = conn.execute(
            select(r.epoch, r.step).where(r.job_id == job_id).order_by(r.epoch, r.step)
        ).all()
        indexes, total = _sample_page(conn, job_id, limit, offset)
        rows = (
            conn.execute(
                select(p.epoch, p.step, p.sample_index, p.prompt_id, p[column or "metrics"]).where(
                    p.job_id == job_id,
                    p.step.in_(sorted({step for _, step in rounds})),
                    p.sample_index.between(indexes[0], indexes[-1]),
                )
            ).all()
            if indexes
            else []
        )
    position = {(epoch, step): i for i, (epoch, step) in enumerate(rounds)}
    values: dict[int, list[float | None]] = {index: [None] * len(rounds) for index in indexes}
    prompt_ids: dict[int, tuple[int, str]] = {}  # sample -> (round position, its prompt_id)
    for epoch, step, index, prompt_id, raw in rows:
        at = position.get((epoch, step))
        if at is None:  # rollups and rows commit together: only a defence
            continue
        values[index][at] = _value(raw, custom)
        if prompt_id is not None and at >= prompt_ids.get(index, (-1, ""))[0]:
            prompt_ids[index] = (at, prompt_id)
    return {
        "job_id": job_id,
        "metric": metric,
        "rounds": [{"epoch": epoch, "step": step} for epoch, step in rounds],
        "samples": [
            {
                "sample_index": index,
                "prompt_id": prompt_ids[index][1] if index in prompt_ids else None,
                "values": values[index],
            }
            for index in indexes
        ],
        "total_samples": total,
    }
