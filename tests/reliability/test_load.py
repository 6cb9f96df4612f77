"""Load: concurrent SDK writers, readers and streams against one server or several processes.

Nothing may fail, no row may be lost, duplicated or left stale, the rollups must equal the
aggregates of the rows sent, and every round must reach the streams. Latency percentiles are
printed (run with `-s` to see them); bench/load.py runs the same workload longer.
"""

from __future__ import annotations

import uuid

import pytest

from _support.appserver import ServerHandle
from _support.infra import MakeServer

from .conftest import PgProcesses
from .workload import LoadConfig, LoadResult, run_load

CI_DURATION_S = 15.0
SLOW_DURATION_S = 120.0
# Servers under load must not throttle the load itself.
LOAD_ENV = {"FINETUNE_LAB_RATE_LIMIT": "off"}


def _run(servers: list[ServerHandle], duration_s: float, label: str, **kw: int) -> LoadResult:
    key = servers[0].create_key(f"load-{uuid.uuid4().hex[:6]}")
    config = LoadConfig(
        urls=[s.base_url for s in servers],
        key=key,
        job_prefix=f"load-{uuid.uuid4().hex[:8]}",
        duration_s=duration_s,
        **kw,
    )
    result = run_load(config)
    print("\n" + result.summary(label))
    assert result.errors == [], "\n".join(result.errors[:20])
    assert result.rounds_written >= 10 and result.rounds_resent >= 3, result.summary(label)
    for server in servers:
        log = server.log_path.read_text(errors="replace")
        assert "Traceback" not in log, server.log_tail()
    return result


def test_load_sqlite(make_server: MakeServer) -> None:
    server = make_server("sqlite", extra_env=LOAD_ENV)
    _run([server], CI_DURATION_S, "sqlite, 1 process")


def test_load_postgresql_three_processes(pg_processes: PgProcesses) -> None:
    servers = pg_processes(3, extra_env=LOAD_ENV)
    _run(servers, CI_DURATION_S, "postgresql, 3 processes", writers=6, readers=3)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_load_long_one_process(make_server: MakeServer, backend: str) -> None:
    server = make_server(backend, extra_env=LOAD_ENV)
    _run([server], SLOW_DURATION_S, f"{backend}, 1 process", writers=8, readers=8, jobs=4)


@pytest.mark.slow
def test_load_long_postgresql_three_processes(pg_processes: PgProcesses) -> None:
    servers = pg_processes(3, extra_env=LOAD_ENV)
    _run(servers, SLOW_DURATION_S, "postgresql, 3 processes", writers=9, readers=6, jobs=4)
