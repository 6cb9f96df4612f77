"""Usage aggregates over traces, computed in SQL: counts, tokens, error rate, latency p50/p95.

Percentiles interpolate linearly between the two closest ranks (PostgreSQL's percentile_cont,
numpy's default). The rank arithmetic is integer SQL (p50 = (n-1)/2, p95 = 19(n-1)/20 with
exact remainders) over window functions, so SQLite and PostgreSQL run the same query and return
the same numbers.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, func, literal_column, select

from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.serving_tables import traces
from finetune_lab.server.errors import validation_error
from finetune_lab.server.services.traces import TraceFilters

MAX_BUCKETS = 5_000
BUCKET_SIZES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
BUCKET_TEXT_FORMAT = "%Y-%m-%d %H:%M:%S"
# Percentile p as an exact fraction num/den of the rank range (n - 1).
PERCENTILES = {"p50": (1, 2), "p95": (19, 20)}


def bucket_start(moment: datetime, granularity: str) -> datetime:
    """The bucket a moment falls in (UTC hours, days, weeks starting on Monday)."""
    moment = moment.astimezone(timezone.utc)
    if granularity == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    return day - timedelta(days=day.weekday())


def _bucket_sql(db: Database, granularity: str) -> ColumnElement[str]:
    """The bucket start as 'YYYY-MM-DD HH:MM:SS' text (UTC) on either backend."""
    col = traces.c.created_at
    if db.is_sqlite:  # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC
        if granularity == "hour":
            return func.substr(col, 1, 13).concat(":00:00")
        if granularity == "day":
            return func.substr(col, 1, 10).concat(" 00:00:00")
        return func.date(col, "-6 days", "weekday 1").concat(" 00:00:00")
    truncated = func.date_trunc(granularity, func.timezone("UTC", col))
    return func.to_char(truncated, "YYYY-MM-DD HH24:MI:SS")


def _percentile_columns(name: str, num: int, den: int) -> list[Any]:
    rank = f"({num} * (w.n - 1)) / {den}"  # integer division: the lower rank
    pick = "MAX(CASE WHEN w.lat IS NOT NULL AND w.rn = {rank} THEN w.lat END)"
    return [
        literal_column(pick.format(rank=rank)).label(f"{name}_lo"),
        literal_column(pick.format(rank=f"{rank} + 1")).label(f"{name}_hi"),
    ]


def _percentile_value(name: str, num: int, den: int) -> Any:
    lo, hi = f"a.{name}_lo", f"a.{name}_hi"
    fraction = f"CAST(({num} * (a.n - 1)) % {den} AS DOUBLE PRECISION) / {den}"
    return literal_column(f"{lo} + (COALESCE({hi}, {lo}) - {lo}) * {fraction}").label(name)


def _stats(db: Database, where: list[ColumnElement[bool]], group: ColumnElement[Any]) -> list[Any]:
    t = traces.c
    windowed = (
        select(
            group.label("g"),
            t.status,
            t.prompt_tokens,
            t.completion_tokens,
            t.total_tokens,
            t.latency_ms.label("lat"),
            (
                func.row_number().over(
                    partition_by=[group, t.latency_ms.is_(None)], order_by=t.latency_ms
                )
                - 1
            ).label("rn"),
            func.count(t.latency_ms).over(partition_by=group).label("n"),
        )
        .where(*where)
        .subquery("w")
    )
    w = windowed.c
    errors = func.sum(case((w.status == "error", 1), else_=0))
    aggregated = (
        select(
            w.g,
            func.count().label("request_count"),
            errors.label("error_count"),
            func.coalesce(func.sum(w.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(w.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(w.total_tokens), 0).label("total_tokens"),
            func.avg(w.lat).label("avg_latency_ms"),
            func.max(w.n).label("n"),
            *[
                col
                for name, (num, den) in PERCENTILES.items()
                for col in _percentile_columns(name, num, den)
            ],
        )
        .group_by(w.g)
        .subquery("a")
    )
    a = aggregated.c
    query = select(
        a.g,
        a.request_count,
        a.error_count,
        a.prompt_tokens,
        a.completion_tokens,
        a.total_tokens,
        cast(a.avg_latency_ms, Float).label("avg_latency_ms"),
        *[_percentile_value(name, num, den) for name, (num, den) in PERCENTILES.items()],
    ).order_by(a.g)
    with db.read() as conn:
        return list(conn.execute(query).all())


def _stats_row(row: Any | None) -> dict[str, Any]:
    if row is None:
        return {
            "request_count": 0,
            "success_count": 0,
            "error_count": 0,
            "error_rate": None,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "avg_latency_ms": None,
            "latency_p50_ms": None,
            "latency_p95_ms": None,
        }
    requests, errors = int(row.request_count), int(row.error_count)
    return {
        "request_count": requests,
        "success_count": requests - errors,
        "error_count": errors,
        "error_rate": errors / requests if requests else None,
        "prompt_tokens": int(row.prompt_tokens),
        "completion_tokens": int(row.completion_tokens),
        "total_tokens": int(row.total_tokens),
        "avg_latency_ms": row.avg_latency_ms,
        "latency_p50_ms": row.p50,
        "latency_p95_ms": row.p95,
    }


def data(
    db: Database,
    principal: Principal,
    *,
    start: datetime | None,
    end: datetime | None,
    granularity: str,
    model: str | None = None,
    operation: str | None = None,
) -> dict[str, Any]:
    """Stats over [start, end): per bucket (gaps filled with zeros), per model, and in total."""
    end = end or datetime.now(timezone.utc)
    start = start or end - (timedelta(days=1) if granularity == "hour" else timedelta(days=30))
    if start > end:
        raise validation_error(
            "start_date is after end_date",
            [{"loc": ["query", "start_date"], "message": "after end_date", "type": "value_error"}],
        )
    first = bucket_start(start, granularity)
    step = BUCKET_SIZES[granularity]
    if (end - first) / step > MAX_BUCKETS:
        message = f"the range spans more than {MAX_BUCKETS} {granularity} buckets"
        raise validation_error(
            message, [{"loc": ["query", "granularity"], "message": message, "type": "value_error"}]
        )
    where = TraceFilters(model=model, operation=operation, start=start, end=end).clauses(
        principal.user_id
    )
    by_bucket = {row.g: row for row in _stats(db, where, _bucket_sql(db, granularity))}
    buckets = []
    moment = first
    while moment < end or (moment == first and start == end):
        key = moment.strftime(BUCKET_TEXT_FORMAT)
        buckets.append({"bucket": moment, **_stats_row(by_bucket.pop(key, None))})
        moment += step
    rows = sorted(_stats(db, where, traces.c.model), key=lambda r: (r.g is None, r.g or ""))
    models = [{"model": row.g, **_stats_row(row)} for row in rows]
    totals = _stats(db, where, traces.c.user_id)
    return {
        "start_date": start,
        "end_date": end,
        "granularity": granularity,
        "totals": _stats_row(totals[0] if totals else None),
        "buckets": buckets,
        "models": models,
    }
