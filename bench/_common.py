"""Shared bench plumbing: a real server process on a fresh database, timing helpers, rows."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Server:
    url: str
    key: str
    database_url: str
    home: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_server(database_url: str | None = None) -> Iterator[Server]:
    """`finetune-lab serve` on `database_url` (default: a temp SQLite file), with a key."""
    with tempfile.TemporaryDirectory(prefix="flbench-") as tmp:
        home = Path(tmp)
        database_url = database_url or f"sqlite:///{home / 'bench.db'}"
        env = {**os.environ, "FINETUNE_LAB_HOME": str(home)}
        cli = [sys.executable, "-m", "finetune_lab"]
        made = subprocess.run(
            [*cli, "keys", "create", "--user", "bench", "--json", "--database-url", database_url],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        key = json.loads(made.stdout)["key"]
        port = _free_port()
        process = subprocess.Popen(
            [
                *cli,
                "serve",
                "--port",
                str(port),
                "--database-url",
                database_url,
                "--parent-pid",
                str(os.getpid()),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {process.stderr.read()!r}")  # type: ignore[union-attr]
                time.sleep(0.1)
            yield Server(url=url, key=key, database_url=database_url, home=home)
        finally:
            process.terminate()
            process.wait(timeout=10)


@contextlib.contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh database on a throwaway PostgreSQL 15 cluster (the test suite's own harness),
    or None where the PostgreSQL binaries are not installed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _support.postgres import LocalCluster, PostgresUnavailable

    try:
        cluster = LocalCluster()
    except PostgresUnavailable:
        yield None
        return
    try:
        yield cluster.create_database()
    finally:
        cluster.close()


def prediction_rows(step: int, epoch: int, count: int, start: int = 0) -> list[dict[str, Any]]:
    """Realistic rows: a short prompt, a sentence answer, generation metadata."""
    return [
        {
            "epoch": epoch,
            "step": step,
            "sample_index": i,
            "prompt": f"Question {i}: what is {i} plus {step}? Answer in one sentence.",
            "ground_truth": f"The answer is {i + step}.",
            "prediction": f"The answer is {i + step + (i % 3)}.",
            "prompt_tokens": 14,
            "completion_tokens": 5,
            "total_tokens": 19,
            "latency_ms": 3.5,
            "max_new_tokens": 64,
            "do_sample": False,
            "prompt_id": f"{i:064x}",
            "source_index": i,
            "sample_source": "bench",
        }
        for i in range(start, start + count)
    ]


def paired_medians(
    baseline: Callable[[], Any], measured: Callable[[], Any], repeat: int, warmup: int = 3
) -> tuple[float, float]:
    """Median seconds of two calls, alternated call by call.

    This machine's CPU speed drifts by up to 2x within seconds; alternating makes both
    medians see the same machine, so their ratio means something.
    """
    for _ in range(warmup):
        baseline()
        measured()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for call, times in ((baseline, samples[0]), (measured, samples[1])):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
    return statistics.median(samples[0]), statistics.median(samples[1])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
