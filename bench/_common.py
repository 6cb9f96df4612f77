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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Server:
    url: str
    key: str
    database_url: str
    home: Path
    process: subprocess.Popen[bytes] | None = None
    # The extra environment the server runs with (its settings; PYTHONPATH for other code).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cli() -> list[str]:
    return [sys.executable, "-m", "finetune_lab"]


def _new_key(
    home: Path, database_url: str, user: str, scopes: str, env: dict[str, str] | None = None
) -> str:
    made = subprocess.run(
        [
            *_cli(),
            "keys",
            "create",
            "--user",
            user,
            "--scopes",
            scopes,
            "--json",
            "--database-url",
            database_url,
        ],
        env={**os.environ, **(env or {}), "FINETUNE_LAB_HOME": str(home)},
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(made.stdout)["key"])


def create_key(server: Server, user: str, scopes: str = "all") -> str:
    """Another API key on `server`'s database, made with the CLI (a new user if `user` is)."""
    return _new_key(server.home, server.database_url, user, scopes, server.env)


@contextlib.contextmanager
def running_server(
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    *,
    src: Path | None = None,
) -> Iterator[Server]:
    """`finetune-lab serve` on `database_url` (default: a temp SQLite file), with a key;
    `env`: extra environment of the server process (its settings); `src`: run the code of
    this `src/` folder instead (an older revision, say). The key is made by the same code
    with the same environment, so it migrates the database no further than the server would.

    The server log goes to a file, not a pipe: a pipe nobody reads would block a server that
    logs a lot (under attack, say). A server that ignores SIGTERM for 10 s is killed.
    """
    with tempfile.TemporaryDirectory(prefix="flbench-") as tmp:
        home = Path(tmp)
        database_url = database_url or f"sqlite:///{home / 'bench.db'}"
        extra = {**(env or {}), **({"PYTHONPATH": str(src)} if src is not None else {})}
        key = _new_key(home, database_url, "bench", "all", extra)
        process_env = {**os.environ, **extra, "FINETUNE_LAB_HOME": str(home)}
        port = _free_port()
        log_path = home / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    *_cli(),
                    "serve",
                    "--port",
                    str(port),
                    "--database-url",
                    database_url,
                    "--parent-pid",
                    str(os.getpid()),
                ],
                env=process_env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    log_tail = log_path.read_text(errors="replace")[-4000:]
                    raise RuntimeError(f"server did not start: {log_tail}")
                time.sleep(0.1)
            yield Server(
                url=url,
                key=key,
                database_url=database_url,
                home=home,
                process=process,
                env=extra,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextlib.contextmanager
def fake_openai_upstream() -> Iterator[str]:
    """The tests' fake OpenAI-compatible endpoint in its own process (so its threads do not
    share a GIL with whoever measures); yields its base URL. Model `echo` answers at once,
    `slow-<ms>` after that pause. Its listen backlog is raised so that a hundred concurrent
    connections queue instead of being dropped."""
    tests = Path(__file__).resolve().parent.parent / "tests"
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(tests)!r})\n"
        "from http.server import ThreadingHTTPServer\n"
        "ThreadingHTTPServer.request_queue_size = 1024\n"
        "from _support.fake_openai import FakeOpenAI\n"
        "fake = FakeOpenAI().start()\n"
        "print(fake.base_url, flush=True)\n"
        "sys.stdin.read()\n"  # until the parent closes the pipe (or is gone)
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("http://"):
            raise RuntimeError("the fake OpenAI upstream did not start")
        yield base_url
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[Callable[[], str] | None]:
    """A throwaway PostgreSQL 15 cluster (the test suite's own harness): yields a function that
    makes a fresh database on it (its URL), or None where the binaries are not installed."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _support.postgres import LocalCluster, PostgresUnavailable

    try:
        cluster = LocalCluster()
    except PostgresUnavailable:
        yield None
        return
    try:
        yield cluster.create_database
    finally:
        cluster.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh database on its own throwaway PostgreSQL 15 cluster, or None (not installed)."""
    with postgres_cluster() as create:
        yield None if create is None else create()


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
