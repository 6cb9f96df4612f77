"""The noisy-neighbour benchmark's well-behaved user, and its latency statistics.

One thread per operation, each paced on its own, as separate clients of one user would be: a
dashboard reading the first predictions page and `/trends` (the user's API key), a training
run ingesting 1,000-row rounds (the job's token, as the training callback sends them), a
monitor on `/healthz`, and optionally a service calling predict on a fast model. Separate
threads keep one stalled operation from starving the others of samples.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from _common import prediction_rows

ROWS_PER_BATCH = 1_000
OPS = ("page", "trends", "ingest", "healthz", "predict")  # in reports, in this order
PREDICT_CALL = {"messages": [{"role": "user", "content": "hi"}]}


@dataclass(frozen=True)
class Sample:
    phase: str
    op: str
    seconds: float
    outcome: str  # "ok", a status code, "timeout" or a transport error's name


@dataclass(frozen=True)
class VictimConfig:
    url: str
    key: str  # the victim's API key: reads and predict
    job_id: str
    job_token: str  # ingest, as the training callback sends it
    timeout: float
    period: float  # shortest time between two requests of one operation
    ingest_period: float
    predict_model: str | None = None


class Victim:
    """Every request made while `phase` is set (at its start, or else at its end) is a sample
    of that phase."""

    def __init__(self, config: VictimConfig) -> None:
        self.config = config
        self.phase: str | None = None
        self.samples: list[Sample] = []
        self.rows_sent = 0
        self.rows_acknowledged = 0
        self.stopping = threading.Event()
        self.ops = OPS if config.predict_model is not None else OPS[:-1]
        self._threads = [
            threading.Thread(target=self._run, args=(op,), name=f"victim-{op}", daemon=True)
            for op in self.ops
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=self.config.timeout + 10)

    @contextlib.contextmanager
    def measuring(self, phase: str) -> Iterator[None]:
        self.phase = phase
        try:
            yield
        finally:
            self.phase = None

    def _headers(self, op: str) -> dict[str, str]:
        if op == "ingest":
            return {"Authorization": f"Bearer {self.config.job_token}"}
        return {} if op == "healthz" else {"X-API-Key": self.config.key}

    def _request(self, op: str, n: int) -> tuple[str, str, bytes | None]:
        predictions = f"/api/training/predictions/{self.config.job_id}"
        if op == "page":
            return "GET", f"{predictions}?limit=50", None
        if op == "trends":
            return "GET", f"{predictions}/trends", None
        if op == "ingest":
            rows = prediction_rows(step=n, epoch=n // 10, count=ROWS_PER_BATCH)
            return "POST", predictions, orjson.dumps({"predictions": rows})
        if op == "healthz":
            return "GET", "/healthz", None
        call = {**PREDICT_CALL, "model": self.config.predict_model}
        return "POST", "/api/v1/predict", orjson.dumps(call)

    def _run(self, op: str) -> None:
        period = self.config.ingest_period if op == "ingest" else self.config.period
        with httpx.Client(
            base_url=self.config.url, headers=self._headers(op), timeout=self.config.timeout
        ) as http:
            n = 0
            while not self.stopping.is_set():
                started = time.monotonic()
                method, path, body = self._request(op, n)
                phase = self.phase
                outcome, elapsed = _timed(http, method, path, body)
                phase = phase or self.phase
                if op == "ingest":
                    self.rows_sent += ROWS_PER_BATCH
                    self.rows_acknowledged += ROWS_PER_BATCH if outcome == "ok" else 0
                if phase is not None:
                    self.samples.append(Sample(phase, op, elapsed, outcome))
                n += 1
                self.stopping.wait(max(0.0, period - (time.monotonic() - started)))


def _timed(http: httpx.Client, method: str, path: str, body: bytes | None) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        status = http.request(method, path, content=body).status_code
        outcome = "ok" if status == 200 else str(status)
    except httpx.TimeoutException:
        outcome = "timeout"
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    return outcome, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list, as bench/load.py reports."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@dataclass(frozen=True)
class OpStats:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]


def phase_stats(samples: list[Sample], phase: str) -> dict[str, OpStats]:
    """Per operation: latency percentiles (failed requests included, at the time they took)
    and the failures by outcome."""
    by_op: dict[str, list[Sample]] = {}
    for sample in samples:
        if sample.phase == phase:
            by_op.setdefault(sample.op, []).append(sample)
    stats = {}
    for op, rows in sorted(by_op.items(), key=lambda item: OPS.index(item[0])):
        ms = [r.seconds * 1e3 for r in rows]
        errors = Counter(r.outcome for r in rows if r.outcome != "ok")
        stats[op] = OpStats(len(ms), percentile(ms, 50), percentile(ms, 99), max(ms), dict(errors))
    return stats


def plain(stats: dict[str, OpStats]) -> dict[str, Any]:
    return {
        op: {
            "count": st.count,
            "p50_ms": st.p50_ms,
            "p99_ms": st.p99_ms,
            "max_ms": st.max_ms,
            "errors": st.errors,
        }
        for op, st in stats.items()
    }
