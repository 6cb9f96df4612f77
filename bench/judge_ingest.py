"""Ingest with a judge configured vs without: grading must not slow ingest (target ratio ~ 1).

One server, two jobs: a plain one, and one whose config has a judge (the fake OpenAI-compatible
endpoint in its own process, answering at once). Batches of 1,000 go to the two jobs alternately
and are compared by their medians (this machine's CPU speed drifts; alternating makes both see
the same machine). The judge worker grades the judged job's rows in the background the whole
time, on the same database: its writes are part of what is measured. Where PostgreSQL 15 is
installed the same run is repeated on it.

`JUDGE_BENCH_BATCHES` sets the measured batches per job (default 30).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from _common import fake_openai_upstream, postgres_database, prediction_rows, running_server
from _common import verdict as verdict_of
from finetune_lab import FinetuneLabClient

BATCH = 1_000
BATCHES = int(os.environ.get("JUDGE_BENCH_BATCHES", "30"))
WARMUP = 3
IDLE_S = 10.0
TARGET = 0.8  # judged / plain ingest rate, medians; ~1 expected, 0.8 leaves room for noise


def measure(database_url: str | None, upstream: str) -> dict[str, Any]:
    plain_times: list[float] = []
    judged_times: list[float] = []
    with (
        running_server(database_url) as server,
        FinetuneLabClient(api_key=server.key, base_url=server.url, timeout=120) as client,
    ):
        model = client.models.register(
            name="bench-judge", kind="openai", base_url=upstream, upstream_model="echo"
        )
        judge = {"name": "q", "model": model.name, "prompt": "{prediction}", "min": 0, "max": 1e9}
        plain = client.jobs.create(name="bench-plain")
        judged = client.jobs.create(
            name="bench-judged", config={"predictions": {"judges": [judge]}}
        )
        started = time.monotonic()
        for index in range(WARMUP + BATCHES):
            rows = prediction_rows(step=index, epoch=index, count=BATCH)
            for job_id, times in ((plain.id, plain_times), (judged.id, judged_times)):
                t0 = time.perf_counter()
                client.training_predictions.create(job_id, rows)
                if index >= WARMUP:
                    times.append(time.perf_counter() - t0)
        elapsed = time.monotonic() - started
        status = client.training_predictions.judges(judged.id)
        time.sleep(IDLE_S)  # ingest stopped: grading has the server to itself
        idle = client.training_predictions.judges(judged.id)
    return {
        "plain": plain_times,
        "judged": judged_times,
        "graded": status.judges[0].graded,
        "failed": status.judges[0].failed,
        "elapsed": elapsed,
        "idle_graded": idle.judges[0].graded - status.judges[0].graded,
    }


def report(title: str, result: dict[str, Any]) -> None:
    plain = BATCH / statistics.median(result["plain"])
    judged = BATCH / statistics.median(result["judged"])
    ratio = judged / plain
    total = BATCH * (WARMUP + BATCHES)
    print(f"{title}: {BATCHES} batches x {BATCH} predictions per job, alternated, medians")
    print(f"  without a judge : {plain:10,.0f} predictions/s")
    print(f"  with a judge    : {judged:10,.0f} predictions/s")
    print(f"  ratio           : {ratio:10.2f}   target >= {TARGET}  {verdict_of(ratio >= TARGET)}")
    print(
        f"  graded while ingesting: {result['graded']:,} of {total:,} rows in "
        f"{result['elapsed']:.1f} s ({result['failed']} failed): grading yields to ingest"
    )
    print(f"  then, ingest idle: {result['idle_graded'] / IDLE_S:,.0f} rows graded/s")


def main() -> None:
    with fake_openai_upstream() as upstream:
        report("judge ingest (SQLite)", measure(None, upstream))
        with postgres_database() as database_url:
            if database_url is None:
                print("judge ingest (PostgreSQL): skipped, PostgreSQL 15 binaries not found")
                return
            report("judge ingest (PostgreSQL)", measure(database_url, upstream))


if __name__ == "__main__":
    main()
