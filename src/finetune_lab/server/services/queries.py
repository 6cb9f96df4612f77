"""The read path: pages, counts, epochs, trends, per-sample history and epoch comparison.

Counts, epochs and trends read the per-round rollups (O(rounds)); pages use the
(job_id, epoch, step, sample_index) index with keyset cursors: deep pages cost what the first does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, func, select, tuple_

from finetune_lab.schema import Prediction, PredictionFilters
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import predictions, round_rollups
from finetune_lab.server.errors import not_found, validation_error
from finetune_lab.server.services import search
from finetune_lab.server.services.jobs import owned_job
from finetune_lab.server.services.rollups import TOTAL_COLUMNS, RoundTotals
from finetune_lab.server.services.texts import TEXT_FIELDS, text_column

# What a page returns is exactly the wire model's fields, read straight from their columns.
PREDICTION_FIELDS = tuple(Prediction.model_fields)
PREDICTION_COLUMNS = tuple(
    text_column(name) if name in TEXT_FIELDS else predictions.c[name] for name in PREDICTION_FIELDS
)
READ_ORDER = (predictions.c.epoch, predictions.c.step, predictions.c.sample_index)


def filter_clauses(
    filters: PredictionFilters, job_id: str, conn: Connection
) -> list[ColumnElement[bool]]:
    p = predictions.c
    where = [search.job_clause(conn, job_id, filters.q)]
    for name in ("epoch", "step", "sample_index", "prompt_id", "validation_pass"):
        value = getattr(filters, name)
        if value is not None:
            where.append(p[name] == value)
    if filters.q:
        where.append(search.clause(conn, job_id, filters.q))
    return where


def rollup_countable(filters: PredictionFilters) -> bool:
    """Whether the per-round rollups can count the rows (filters on epoch and step only)."""
    return (
        filters.sample_index is None
        and filters.prompt_id is None
        and filters.validation_pass is None
        and not filters.q
    )


def encode_cursor(epoch: int, step: int, sample_index: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([epoch, step, sample_index])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if (
            isinstance(value, list)
            and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            return value[0], value[1], value[2]
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        pass
    raise validation_error(
        "cursor is not valid: pass next_cursor from a previous page unchanged",
        [{"loc": ["query", "cursor"], "message": "invalid cursor", "type": "value_error"}],
    )


def _count(conn: Connection, job_id: str, filters: PredictionFilters) -> int:
    if rollup_countable(filters):
        query = select(func.coalesce(func.sum(round_rollups.c.sample_count), 0)).where(
            round_rollups.c.job_id == job_id
        )
        if filters.epoch is not None:
            query = query.where(round_rollups.c.epoch == filters.epoch)
        if filters.step is not None:
            query = query.where(round_rollups.c.step == filters.step)
    else:
        query = (
            select(func.count())
            .select_from(predictions)
            .where(*filter_clauses(filters, job_id, conn))
        )
    return int(conn.scalar(query) or 0)


def _epoch_count(conn: Connection, job_id: str) -> int:
    return int(
        conn.scalar(
            select(func.count(func.distinct(round_rollups.c.epoch))).where(
                round_rollups.c.job_id == job_id
            )
        )
        or 0
    )


def rows_to_dicts(rows: Any) -> list[dict[str, Any]]:
    return [dict(zip(PREDICTION_FIELDS, row, strict=True)) for row in rows]


def page_rows(
    conn: Connection,
    job_id: str,
    filters: PredictionFilters,
    *,
    limit: int,
    offset: int = 0,
    after: tuple[int, int, int] | None = None,
    sort: str | None = None,
    user_id: int | None = None,
) -> list[dict[str, Any]]:
    """`user_id`: only that user's rows (a read spread over several transactions, such as an
    export, must not run into the rows of whoever takes the job id after a delete)."""
    query = select(*PREDICTION_COLUMNS).where(*filter_clauses(filters, job_id, conn))
    if user_id is not None:
        query = query.where(predictions.c.user_id == user_id)
    if after is not None:
        query = query.where(tuple_(*READ_ORDER) > tuple_(*after))
    order: list[Any] = list(READ_ORDER)
    if sort:
        score = predictions.c[sort.lstrip("-")]
        order.insert(0, (score.desc() if sort.startswith("-") else score.asc()).nulls_last())
    query = query.order_by(*order).limit(limit).offset(offset)
    return rows_to_dicts(conn.execute(query))


def list_predictions(
    db: Database,
    principal: Principal,
    job_id: str,
    filters: PredictionFilters,
    *,
    limit: int,
    offset: int,
    cursor: str | None,
    sort: str | None = None,
) -> dict[str, Any]:
    """A page in read order (keyset cursor), or sorted by a score (offset paging only)."""
    if sort and cursor:
        raise validation_error(
            "cursor pages follow the default order: with sort, page with offset",
            [
                {
                    "loc": ["query", "cursor"],
                    "message": "not allowed with sort",
                    "type": "value_error",
                }
            ],
        )
    after = decode_cursor(cursor) if cursor else None
    with db.read() as conn:
        owned_job(conn, principal, job_id)
        if filters.q:
            search.check_scan_bound(conn, job_id, filters.q, filters.epoch, filters.step)
        rows = page_rows(
            conn, job_id, filters, limit=limit + 1, offset=offset, after=after, sort=sort
        )
        total = _count(conn, job_id, filters)
        epoch_count = _epoch_count(conn, job_id)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        if not sort:
            next_cursor = encode_cursor(last["epoch"], last["step"], last["sample_index"])
    return {
        "job_id": job_id,
        "predictions": rows,
        "total_count": total,
        "epoch_count": epoch_count,
        "next_cursor": next_cursor,
    }


def epochs(db: Database, principal: Principal, job_id: str) -> dict[str, Any]:
    r = round_rollups.c
    query = (
        select(r.epoch, func.sum(r.sample_count), func.max(r.step))
        .where(r.job_id == job_id)
        .group_by(r.epoch)
        .order_by(r.epoch)
    )
    with db.read() as conn:
        owned_job(conn, principal, job_id)
        rows = conn.execute(query).all()
    return {
        "job_id": job_id,
        "epochs": [
            {"epoch": epoch, "prediction_count": int(count), "latest_step": latest}
            for epoch, count, latest in rows
        ],
    }


def trend_point(epoch: int, step: int, totals: RoundTotals) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "step": step,
        "sample_count": totals.sample_count,
        "avg_exact_match": totals.mean("em"),
        "avg_char_error_rate": totals.mean("cer"),
        "avg_length_ratio": totals.mean("lr"),
        "avg_word_overlap": totals.mean("wo"),
        "min_char_error_rate": totals.cer_min,
        "max_char_error_rate": totals.cer_max,
        "validation_pass_rate": totals.validation_pass_rate,
        "metrics": totals.metric_means(),
    }


def overall_improvement(points: list[dict[str, Any]]) -> float | None:
    if len(points) < 2:
        return None
    first, last = points[0]["avg_char_error_rate"], points[-1]["avg_char_error_rate"]
    if first is None or last is None or first <= 0:
        return None
    return float((first - last) / first * 100)


def _grouped_totals(
    conn: Connection, job_id: str, group_by: str
) -> list[tuple[int, int, RoundTotals]]:
    """(epoch, last step, totals) per epoch or per round: summed in SQL over the rollups."""
    r = round_rollups.c
    keys = [r.epoch] if group_by == "epoch" else [r.epoch, r.step]
    sums = [func.sum(r[name]).label(name) for name in TOTAL_COLUMNS]
    query = (
        select(
            r.epoch,
            func.max(r.step).label("step"),
            *sums,
            func.min(r.cer_min).label("cer_min"),
            func.max(r.cer_max).label("cer_max"),
        )
        .where(r.job_id == job_id)
        .group_by(*keys)
        .order_by(*keys)
    )
    groups = {
        (row.epoch if group_by == "epoch" else (row.epoch, row.step)): (
            row.epoch,
            row.step,
            RoundTotals.from_row(row),
        )
        for row in conn.execute(query)
    }
    custom = select(r.epoch, r.step, r.metrics).where(r.job_id == job_id, r.metrics.is_not(None))
    for row in conn.execute(custom):
        key = row.epoch if group_by == "epoch" else (row.epoch, row.step)
        groups[key][2].merge(RoundTotals(metrics=row.metrics))
    return list(groups.values())


# (name in `best`, field of a trend point, whether lower is better). length_ratio is left out:
# neither a higher nor a lower ratio is better (1.0 is, and an average hides both sides).
BEST_SCORES = (
    ("exact_match", "avg_exact_match", False),
    ("char_error_rate", "avg_char_error_rate", True),
    ("word_overlap", "avg_word_overlap", False),
    ("validation_pass_rate", "validation_pass_rate", False),
)


def _better(value: float, best: dict[str, Any] | None, lower_is_better: bool) -> bool:
    """Strictly better, so that a tie keeps the earlier round."""
    if best is None:
        return True
    return value < best["value"] if lower_is_better else value > best["value"]


def best_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The best round per score from per-round points in (epoch, step) order; custom metrics
    (higher is better) under `metrics`; scores without any value are absent."""
    best: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for point in rounds:
        at = {"epoch": point["epoch"], "step": point["step"]}
        for name, field, lower in BEST_SCORES:
            value = point[field]
            if value is not None and _better(value, best.get(name), lower):
                best[name] = {**at, "value": value}
        for name, value in point["metrics"].items():
            if value is not None and _better(value, custom.get(name), False):
                custom[name] = {**at, "value": value}
    best["metrics"] = custom
    return best


def trends(db: Database, principal: Principal, job_id: str, *, group_by: str) -> dict[str, Any]:
    with db.read() as conn:
        owned_job(conn, principal, job_id)
        groups = _grouped_totals(conn, job_id, group_by)
        rounds = groups if group_by == "step" else _grouped_totals(conn, job_id, "step")
    points = [trend_point(epoch, step, totals) for epoch, step, totals in groups]
    round_points = (
        points
        if rounds is groups
        else [trend_point(epoch, step, totals) for epoch, step, totals in rounds]
    )
    return {
        "job_id": job_id,
        "group_by": group_by,
        "trends": points,
        "overall_improvement": overall_improvement(points),
        "best": best_rounds(round_points),
    }


SAMPLE_ROUND_FIELDS = (
    "epoch",
    "step",
    "prediction",
    "exact_match",
    "char_error_rate",
    "length_ratio",
    "word_overlap",
    "validation_pass",
    "validation_kind",
    "validation_errors",
    "metrics",
    "latency_ms",
    "completion_tokens",
    "created_at",
    "ground_truth",  # each round's own truth (a round may have been sent without one)
)
SAMPLE_FIELDS = ("prompt", "prompt_id")  # of the sample: its latest round's


def sample_history(
    db: Database, principal: Principal, job_id: str, sample_index: int
) -> dict[str, Any]:
    p = predictions.c
    with db.read() as conn:
        owned_job(conn, principal, job_id)
        # Probe the unique (job_id, step, sample_index) index once per round: no job scan.
        steps = sorted(
            set(conn.scalars(select(round_rollups.c.step).where(round_rollups.c.job_id == job_id)))
        )
        rows = (
            conn.execute(
                select(
                    *(
                        text_column(name) if name in TEXT_FIELDS else p[name]
                        for name in SAMPLE_ROUND_FIELDS + SAMPLE_FIELDS
                    )
                )
                .where(p.job_id == job_id, p.step.in_(steps), p.sample_index == sample_index)
                .order_by(p.epoch, p.step)
            ).all()
            if steps
            else []
        )
    if not rows:
        raise not_found(f"sample {sample_index} of this job")
    width = len(SAMPLE_ROUND_FIELDS)
    rounds = [dict(zip(SAMPLE_ROUND_FIELDS, row[:width], strict=True)) for row in rows]
    last = rows[-1]
    # A round sent without a truth does not erase the sample's: the latest one given wins.
    truths = [r.ground_truth for r in rows if r.ground_truth is not None]
    return {
        "job_id": job_id,
        "sample_index": sample_index,
        "prompt": last.prompt,
        "ground_truth": truths[-1] if truths else None,
        "prompt_id": last.prompt_id,
        "rounds": rounds,
    }


def _last_round(conn: Connection, job_id: str, epoch: int) -> tuple[int, list[Any]]:
    step = conn.scalar(
        select(func.max(round_rollups.c.step)).where(
            round_rollups.c.job_id == job_id, round_rollups.c.epoch == epoch
        )
    )
    if step is None:
        raise not_found(f"epoch {epoch} of this job")
    p = predictions.c
    rows = conn.execute(
        select(
            p.sample_index,
            p.prompt_id,
            text_column("prompt"),
            text_column("ground_truth"),
            p.prediction,
            p.char_error_rate,
            p.exact_match,
        )
        .where(p.job_id == job_id, p.epoch == epoch, p.step == step)
        .order_by(p.sample_index)
    ).all()
    return int(step), list(rows)


def _direction(before: Any, after: Any) -> str:
    """improved / regressed / unchanged by CER; exact match breaks ties."""
    for worse_is_higher, a, b in (
        (True, before.char_error_rate, after.char_error_rate),
        (False, before.exact_match, after.exact_match),
    ):
        if a is None or b is None or a == b:
            continue
        better = b < a if worse_is_higher else b > a
        return "improved" if better else "regressed"
    return "unchanged"


def _pair(before: list[Any], after: list[Any]) -> tuple[list[tuple[Any, Any]], int, int]:
    """Match two rounds' rows: by prompt_id where both rows have one, else by sample_index.

    Why: two jobs may order (or subset) the same eval set differently; prompt_id is the stable
    identity. Repeated prompt_ids pair up in sample_index order. Returns the pairs and how many
    rows of each side found no partner.
    """
    by_id: dict[str, list[Any]] = {}
    for row in after:
        if row.prompt_id is not None:
            by_id.setdefault(row.prompt_id, []).append(row)
    pairs: list[tuple[Any, Any]] = []
    used: set[int] = set()
    left: list[Any] = []
    for row in before:
        candidates = by_id.get(row.prompt_id, []) if row.prompt_id is not None else []
        if candidates:
            partner = candidates.pop(0)
            used.add(partner.sample_index)
            pairs.append((row, partner))
        else:
            left.append(row)
    # The rest pair by sample_index, unless both carry (necessarily different) prompt_ids.
    by_index = {row.sample_index: row for row in after if row.sample_index not in used}
    unmatched_from = 0
    for row in left:
        partner = by_index.get(row.sample_index)
        if partner is None or (row.prompt_id is not None and partner.prompt_id is not None):
            unmatched_from += 1
            continue
        del by_index[row.sample_index]
        pairs.append((row, partner))
    return pairs, unmatched_from, len(by_index)


def compare(
    db: Database,
    principal: Principal,
    job_id: str,
    from_epoch: int,
    to_epoch: int,
    to_job: str | None = None,
) -> dict[str, Any]:
    """Last round of epoch A of `job_id` against the last round of epoch B of `to_job` (the
    same job when absent); both jobs must be the caller's (else 404, like any unknown job)."""
    other = job_id if to_job is None else to_job
    with db.read() as conn:
        owned_job(conn, principal, job_id)
        if other != job_id:
            owned_job(conn, principal, other)
        from_step, before = _last_round(conn, job_id, from_epoch)
        to_step, after = _last_round(conn, other, to_epoch)
    pairs, unmatched_from, unmatched_to = _pair(before, after)
    buckets: dict[str, list[dict[str, Any]]] = {"improved": [], "regressed": [], "unchanged": []}
    for a, b in sorted(pairs, key=lambda pair: pair[0].sample_index):
        buckets[_direction(a, b)].append(
            {
                "sample_index": a.sample_index,
                "from_sample_index": a.sample_index,
                "to_sample_index": b.sample_index,
                "prompt_id": a.prompt_id if a.prompt_id is not None else b.prompt_id,
                "prompt": b.prompt,
                "ground_truth": b.ground_truth,
                "from_prediction": a.prediction,
                "to_prediction": b.prediction,
                "from_char_error_rate": a.char_error_rate,
                "to_char_error_rate": b.char_error_rate,
                "from_exact_match": a.exact_match,
                "to_exact_match": b.exact_match,
            }
        )
    return {
        "job_id": job_id,
        "to_job_id": other,
        "from_epoch": from_epoch,
        "to_epoch": to_epoch,
        "from_step": from_step,
        "to_step": to_step,
        "summary": {name: len(items) for name, items in buckets.items()},
        "unmatched": {"from": unmatched_from, "to": unmatched_to},
        **buckets,
    }


def ensure_owned(db: Database, principal: Principal, job_id: str) -> None:
    with db.read() as conn:
        owned_job(conn, principal, job_id)
