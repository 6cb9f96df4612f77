"""Mixed load: concurrent SDK writers, readers and SSE streams for a fixed time.

Runs tests/reliability/workload.py (the same workload and checks as the load tests) longer:
SQLite, PostgreSQL with one server process, and PostgreSQL with three processes on one
database (workers spread over them, each job's stream on another process than its writers).
Each configuration is first run by a single writer and a single reader (the baseline, same
run, same machine); the table gives p50/p99 per operation under load and the p50 ratio to the
baseline. After every run the database must hold exactly the rows sent (none lost, duplicated
or stale), rollups must equal client-side aggregates and every round must have been streamed.

`LOAD_DURATION_S` (default 60) sets the length of each loaded run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from _common import postgres_database, running_server, verdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reliability.workload import LoadConfig, LoadResult, run_load

BASELINE_S = 10.0
LOAD_S = float(os.environ.get("LOAD_DURATION_S", "60"))
WRITERS, READERS, JOBS = 8, 8, 4


@contextlib.contextmanager
def servers(database_url: str | None, count: int) -> Iterator[tuple[list[str], str]]:
    """`count` server processes on one database; (their URLs, an API key)."""
    with contextlib.ExitStack() as stack:
        started = [stack.enter_context(running_server(database_url))]
        url = started[0].database_url
        started += [stack.enter_context(running_server(url)) for _ in range(count - 1)]
        yield [s.url for s in started], started[0].key


def run(urls: list[str], key: str, duration: float, **shape: int) -> LoadResult:
    config = LoadConfig(
        urls=urls,
        key=key,
        job_prefix=f"bench-{uuid.uuid4().hex[:8]}",
        duration_s=duration,
        **shape,
    )
    return run_load(config)


def report(label: str, base: LoadResult, load: LoadResult) -> bool:
    print(base.summary(f"{label} baseline (1 writer, 1 reader)"))
    print(load.summary(f"{label} load ({WRITERS} writers, {READERS} readers, {JOBS} jobs)"))
    base_stats, load_stats = base.stats(), load.stats()
    print(f"  {'operation':<14}{'base p50':>10}{'load p50':>10}{'load p99':>10}{'p50 ratio':>11}")
    for op, st in load_stats.items():
        ref = base_stats.get(op)
        ratio = f"{st.p50_ms / ref.p50_ms:>10.1f}x" if ref else f"{'-':>11}"
        base_p50 = f"{ref.p50_ms:>10.1f}" if ref else f"{'-':>10}"
        print(f"  {op:<14}{base_p50}{st.p50_ms:>10.1f}{st.p99_ms:>10.1f}{ratio}")
    ok = not base.errors and not load.errors
    for error in [*base.errors, *load.errors][:10]:
        print(f"  error: {error}")
    print(
        f"  {verdict(ok)}: {load.unique_rows} distinct rows stored exactly once "
        f"({load.rows_sent} sent, {load.rounds_resent} rounds re-sent), "
        f"{load.rows_sent / load.elapsed_s:.0f} rows/s under load vs "
        f"{base.rows_sent / base.elapsed_s:.0f} rows/s for one writer"
    )
    return ok


def bench(label: str, database_url: str | None, processes: int) -> bool:
    with servers(database_url, processes) as (urls, key):
        base = run(urls[:1], key, BASELINE_S, writers=1, readers=1, jobs=1)
        load = run(urls, key, LOAD_S, writers=WRITERS, readers=READERS, jobs=JOBS)
    return report(label, base, load)


def main() -> None:
    os.environ["FINETUNE_LAB_RATE_LIMIT"] = "off"  # the load itself must not be throttled
    results = [bench("sqlite, 1 process", None, 1)]
    with postgres_database() as url:
        if url is None:
            print("load: PostgreSQL 15 not installed; PostgreSQL runs skipped")
        else:
            results.append(bench("postgresql, 1 process", url, 1))
    with postgres_database() as url:
        if url is not None:
            results.append(bench("postgresql, 3 processes", url, 3))
    if not all(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
