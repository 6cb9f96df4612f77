"""Analytics against a live server: recorded traces come back filtered and paged, and the
aggregates equal a reference computed here from the same traces (on both backends)."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone

import pytest

from _support.appserver import ServerHandle
from server._helpers import assert_error

from .conftest import NewUser, User

START = datetime(2030, 1, 12, 0, 0, tzinfo=timezone.utc)  # a Saturday: weeks split on Monday
MODELS = ("alpha", "beta")


def percentile(values: list[float], num: int, den: int) -> float | None:
    """Linear interpolation between closest ranks, in the server's exact arithmetic."""
    if not values:
        return None
    ordered = sorted(values)
    rank, remainder = divmod(num * (len(ordered) - 1), den)
    low = ordered[rank]
    high = ordered[rank + 1] if remainder else low
    return low + (high - low) * float(remainder) / den


def stats(rows: list[dict]) -> dict:
    latencies = [r["latency_ms"] for r in rows if r.get("latency_ms") is not None]
    errors = sum(r["status"] == "error" for r in rows)
    return {
        "request_count": len(rows),
        "success_count": len(rows) - errors,
        "error_count": errors,
        "error_rate": errors / len(rows) if rows else None,
        "prompt_tokens": sum(r.get("prompt_tokens") or 0 for r in rows),
        "completion_tokens": sum(r.get("completion_tokens") or 0 for r in rows),
        "total_tokens": sum(r.get("total_tokens") or 0 for r in rows),
        "latency_p50_ms": percentile(latencies, 1, 2),
        "latency_p95_ms": percentile(latencies, 19, 20),
        "avg_latency_ms": sum(latencies) / len(latencies) if latencies else None,
    }


def assert_stats(got: dict, rows: list[dict]) -> None:
    want = stats(rows)
    avg = want.pop("avg_latency_ms")
    assert {k: got[k] for k in want} == want
    assert got["avg_latency_ms"] == (pytest.approx(avg) if avg is not None else None)


def seed_traces(user: User) -> list[dict]:
    """~60 traces over four days with latencies, tokens, errors, two models, two operations."""
    rng = random.Random(7)
    sent = []
    for i in range(60):
        at = START + timedelta(minutes=rng.randrange(0, 4 * 24 * 60), seconds=i)
        trace = {
            "model": rng.choice(MODELS),
            "operation": rng.choice(["external", "embedding"]),
            "status": "error" if rng.random() < 0.2 else "success",
            "latency_ms": round(rng.uniform(5, 500), 3) if i % 9 else None,
            "prompt_tokens": rng.randrange(1, 100),
            "completion_tokens": rng.randrange(0, 50),
            "created_at": at.isoformat(),
        }
        if i % 5 == 0:  # the same instant written with another offset: stored as UTC
            trace["created_at"] = at.astimezone(timezone(timedelta(hours=2))).isoformat()
        resp = user.http.post("/api/analytics/traces", json=trace)
        assert resp.status_code == 201, resp.text
        stored = resp.json()
        assert stored["total_tokens"] == trace["prompt_tokens"] + trace["completion_tokens"]
        stored_at = datetime.fromisoformat(stored["created_at"].replace("Z", "+00:00"))
        assert stored_at == at
        sent.append({**trace, "total_tokens": stored["total_tokens"], "at": at, "id": stored["id"]})
    return sent


def bucket_of(at: datetime, granularity: str) -> datetime:
    if granularity == "hour":
        return at.replace(minute=0, second=0, microsecond=0)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if granularity == "day" else day - timedelta(days=day.weekday())


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.parametrize("granularity", ["hour", "day", "week"])
def test_aggregates_match_the_traces(
    server: ServerHandle, new_user: NewUser, granularity: str
) -> None:
    user = new_user("production")
    sent = seed_traces(user)
    start, end = START + timedelta(hours=5), START + timedelta(days=3, hours=7)
    params = {
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "granularity": granularity,
    }
    resp = user.http.get("/api/analytics/data", params=params)
    assert resp.status_code == 200, resp.text
    data = resp.json()
    inside = [t for t in sent if start <= t["at"] < end]
    assert_stats(data["totals"], inside)
    buckets = [parse(b["bucket"]) for b in data["buckets"]]
    assert buckets == sorted(buckets) and len(set(buckets)) == len(buckets)
    assert buckets[0] == bucket_of(start, granularity)
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
    assert all(b - a == step[granularity] for a, b in itertools.pairwise(buckets))
    for bucket in data["buckets"]:
        rows = [t for t in inside if bucket_of(t["at"], granularity) == parse(bucket["bucket"])]
        assert_stats(bucket, rows)
    assert sum(b["request_count"] for b in data["buckets"]) == len(inside)
    assert [m["model"] for m in data["models"]] == sorted({t["model"] for t in inside})
    for entry in data["models"]:
        assert_stats(entry, [t for t in inside if t["model"] == entry["model"]])
    # Filters narrow the same computation.
    only = user.http.get(
        "/api/analytics/data", params={**params, "model": "beta", "operation": "embedding"}
    ).json()
    assert_stats(
        only["totals"],
        [t for t in inside if t["model"] == "beta" and t["operation"] == "embedding"],
    )


def test_trace_list_filters_and_cursor(server: ServerHandle, new_user: NewUser) -> None:
    user = new_user("production")
    sent = seed_traces(user)
    newest_first = sorted(sent, key=lambda t: (t["at"], t["id"]), reverse=True)
    seen: list[int] = []
    params: dict = {"limit": 7}
    for _ in range(20):
        page = user.http.get("/api/analytics/traces", params=params).json()
        seen += [t["id"] for t in page["traces"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [t["id"] for t in newest_first]
    filters = {
        "model": "alpha",
        "status": "error",
        "operation": "external",
        "start_date": (START + timedelta(days=1)).isoformat(),
        "end_date": "2030-01-14",  # a date: through the end of that day
    }
    got = user.http.get("/api/analytics/traces", params={**filters, "limit": 1000}).json()
    want = [
        t["id"]
        for t in newest_first
        if t["model"] == "alpha"
        and t["status"] == "error"
        and t["operation"] == "external"
        and START + timedelta(days=1) <= t["at"] < START + timedelta(days=3)
    ]
    assert [t["id"] for t in got["traces"]] == want and want
    other = new_user("production")
    assert other.http.get("/api/analytics/traces").json() == {"traces": [], "next_cursor": None}
    assert (
        other.http.get(
            "/api/analytics/data", params={"start_date": "2030-01-12", "end_date": "2030-01-16"}
        ).json()["totals"]["request_count"]
        == 0
    )


def test_bad_analytics_input(server: ServerHandle, new_user: NewUser) -> None:
    http = new_user("production").http
    for params in (
        {"start_date": "2030-01-11", "end_date": "2030-01-09"},
        {"granularity": "minute"},
        {"start_date": "yesterday"},
        {"start_date": "2000-01-01", "end_date": "2030-01-01", "granularity": "hour"},
    ):
        assert_error(http.get("/api/analytics/data", params=params), 422)
    for params in (
        {"cursor": "not-a-cursor"},
        {"limit": 0},
        {"status": "maybe"},
        {"start_date": "2030-01-11", "end_date": "2030-01-09"},
    ):
        assert_error(http.get("/api/analytics/traces", params=params), 422)
    for body in (
        {},
        {"model": "m", "latency_ms": -1},
        {"model": "m", "surprise": 1},
        {"model": "m", "status": "meh"},
        {"model": "m", "created_at": "soon"},
        {"model": "m\x00"},
    ):
        assert_error(http.post("/api/analytics/traces", json=body), 422)
    assert http.get("/api/analytics/traces").json()["traces"] == []
