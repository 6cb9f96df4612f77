"""Faults: a server SIGKILLed mid-delivery, PostgreSQL restarted under load, a full disk under
the training spool, clients that drop their event streams. Nothing may be lost or duplicated,
training must never crash, and the server must recover by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.appserver import Backend, ServerHandle
from _support.infra import MakeServer
from _support.postgres import LocalCluster
from finetune_lab.client import FinetuneLabClient
from finetune_lab.training.sender import BackgroundSender
from finetune_lab.training.spool import JobSpool
from finetune_lab.training.spooled_job import SENDER_TIMEOUT

NO_LIMIT = {"FINETUNE_LAB_RATE_LIMIT": "off"}
CHILD = Path(__file__).with_name("_full_disk_child.py")
PRED = "/api/training/predictions"


def round_rows(step: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "epoch": step // 10,
            "step": step,
            "sample_index": i,
            "prompt": f"prompt {i}",
            "ground_truth": f"answer {i}",
            "prediction": f"answer {i + step % 3}",
        }
        for i in range(count)
    ]


def stored(client: FinetuneLabClient, job_id: str) -> Counter[tuple[int, int, str]]:
    """(step, sample_index, prediction) of every stored row, with how often each came back."""
    return Counter(
        (row.step, row.sample_index, row.prediction)
        for row in client.training_predictions.iter(job_id, page_size=1000)
    )


def expected(steps: range | list[int], count: int) -> Counter[tuple[int, int, str]]:
    return Counter(
        (r["step"], r["sample_index"], r["prediction"]) for s in steps for r in round_rows(s, count)
    )


def sender_for(server: ServerHandle, key: str, spool: JobSpool) -> BackgroundSender:
    def client() -> FinetuneLabClient:
        return FinetuneLabClient(
            api_key=key, base_url=server.base_url, timeout=SENDER_TIMEOUT, max_retries=0
        )

    return BackgroundSender(spool, client, initial_backoff=0.1, max_backoff=1.0)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_clean_log(server: ServerHandle) -> None:
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "ERROR" not in log, server.log_tail(80)


# -- 1. the server SIGKILLed while the training sender delivers ----------------------------------
ROWS_PER_ROUND = 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_server_sigkilled_during_delivery_then_sender_and_sync_deliver_exactly_once(
    make_server: MakeServer, tmp_path: Path, backend: Backend
) -> None:
    server = make_server(backend, extra_env=NO_LIMIT)
    key = server.create_key("killed")
    job_id = f"t-kill-{uuid.uuid4().hex[:8]}"
    spool = JobSpool(tmp_path / "spool", job_id)
    spool.update_meta(api_url=server.base_url, job={"id": job_id, "name": "kill"}, finished=False)
    for step in range(40):  # 8,000 rows queued before the sender starts
        spool.append(round_rows(step, ROWS_PER_ROUND))
    observer = FinetuneLabClient(api_key=key, base_url=server.base_url, max_retries=0)
    sender = sender_for(server, key, spool)
    sender.submit(round_rows(40, ROWS_PER_ROUND))

    def delivered_rows() -> int:
        try:
            return observer.training_predictions.get(job_id, limit=1).total_count
        except Exception:
            return 0

    for kills in (1, 2):  # twice, while batches are being posted back to back
        before = delivered_rows()
        wait_for(lambda b=before: delivered_rows() > b + 2 * ROWS_PER_ROUND, 60, "delivery")
        assert len(spool.pending()) > 5, "the kill must land while rounds are still queued"
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        server.stop()  # reaps it
        for step in range(38 + 3 * kills, 41 + 3 * kills):  # training goes on meanwhile
            sender.submit(round_rows(step, ROWS_PER_ROUND))
        time.sleep(0.5)
        server.start()
    assert sender.flush(timeout=120), sender.last_error
    assert stored(observer, job_id) == expected(range(47), ROWS_PER_ROUND)

    # Killed again right after more rounds: they stay spooled, `finetune-lab sync` delivers them.
    for step in range(47, 50):
        sender.submit(round_rows(step, ROWS_PER_ROUND))
    os.kill(server.pid, signal.SIGKILL)  # type: ignore[arg-type]
    server.stop()
    assert sender.close(timeout=1.0) is False  # nobody answers: the rounds stay on disk
    assert spool.pending()
    server.start()
    sync = ["sync", "--spool-dir", str(tmp_path / "spool"), "--api-url", server.base_url]
    res = server.cli(*sync, "--api-key", key)
    assert res.returncode == 0, res.stdout + res.stderr
    again = server.cli(*sync, "--api-key", key)  # re-running sync is harmless
    assert again.returncode == 0, again.stdout + again.stderr
    assert stored(observer, job_id) == expected(range(50), ROWS_PER_ROUND)
    job = observer.jobs.get(job_id)
    assert (job.status, job.prediction_count) == ("completed", 50 * ROWS_PER_ROUND)
    rounds = observer.training_predictions.trends(job_id, group_by="step").trends
    assert {p.step: p.sample_count for p in rounds} == dict.fromkeys(range(50), ROWS_PER_ROUND)
    assert not spool.directory.exists()
    observer.close()


# -- 2. PostgreSQL restarted while writers, a training sender and a stream are running -----------
class Writer(threading.Thread):
    """Sends rounds through the SDK (with its retries) until told to stop."""

    def __init__(self, url: str, key: str, job_id: str, first_step: int) -> None:
        super().__init__(daemon=True)
        self.client = FinetuneLabClient(api_key=key, base_url=url, max_retries=8)
        self.job_id, self.step = job_id, first_step
        self.steps: list[int] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.client.training_predictions.create(self.job_id, round_rows(self.step, 200))
                self.steps.append(self.step)
            except Exception as exc:
                self.errors.append(repr(exc))
            self.step += 1
            time.sleep(0.05)
        self.client.close()


def test_postgresql_restarted_under_load_loses_nothing(
    private_cluster: LocalCluster, tmp_path: Path
) -> None:
    server = ServerHandle(
        backend="postgresql",
        database_url=private_cluster.create_database(),
        home=tmp_path / "server",
        extra_env={**NO_LIMIT, "FINETUNE_LAB_STREAM_HEARTBEAT_S": "1"},
    )
    server.start()
    try:
        _restart_database_under_load(server, private_cluster, tmp_path)
    finally:
        server.stop()


def _restart_database_under_load(
    server: ServerHandle, cluster: LocalCluster, tmp_path: Path
) -> None:
    key = server.create_key("dbrestart")
    client = FinetuneLabClient(api_key=key, base_url=server.base_url)
    for job_id in ("sdk", "spooled"):
        client.jobs.create(id=job_id)
    pid = server.pid
    writers = [Writer(server.base_url, key, "sdk", first_step=n * 100_000) for n in range(2)]
    spool = JobSpool(tmp_path / "spool", "spooled")
    spool.update_meta(api_url=server.base_url, job={"id": "spooled"}, finished=False)
    sender = sender_for(server, key, spool)
    streamed: set[int] = set()
    stop_following = threading.Event()

    def follow() -> None:  # an SDK stream opened before the outage, reconnecting through it
        with FinetuneLabClient(api_key=key, base_url=server.base_url) as own:
            stream = own.training_predictions.stream("sdk", last_event_id=0, max_reconnects=30)
            for event in stream:
                if event.event == "predictions":
                    streamed.update(r.step for r in event.data.rounds)
                if stop_following.is_set():
                    break

    raw_steps: set[int] = set()
    raw_end: list[str] = []

    def follow_raw() -> None:  # one HTTP connection that must stay open through the outage
        headers = {"X-API-Key": key}
        params = {"last_event_id": 0}
        http = httpx.Client(base_url=server.base_url, headers=headers, timeout=30)
        with http, http.stream("GET", f"{PRED}/sdk/stream", params=params) as response:
            try:
                for line in response.iter_lines():
                    if line.startswith("data: ") and '"rounds"' in line:
                        raw_steps.update(r["step"] for r in json.loads(line[6:])["rounds"])
                    if stop_following.is_set():
                        return
            except httpx.HTTPError as exc:
                raw_end.append(repr(exc))
                return
        raw_end.append("the server ended the stream")

    follower = threading.Thread(target=follow, daemon=True)
    raw_follower = threading.Thread(target=follow_raw, daemon=True)
    follower.start()
    raw_follower.start()
    for writer in writers:
        writer.start()
    spooled_steps = list(range(60))
    probes: list[tuple[float, int, Any]] = []
    for step in spooled_steps[:10]:
        sender.submit(round_rows(step, 100))
        time.sleep(0.1)
    cluster.stop("immediate")  # a crash: connections die, the restart replays the WAL
    down_at = time.monotonic()
    with httpx.Client(base_url=server.base_url, headers={"X-API-Key": key}, timeout=30) as http:
        for step in spooled_steps[10:30]:
            sender.submit(round_rows(step, 100))  # training goes on during the outage
            started = time.perf_counter()
            answer = http.get(f"{PRED}/sdk", params={"limit": 1})
            probes.append((time.perf_counter() - started, answer.status_code, answer.json()))
        time.sleep(max(0.0, 4.0 - (time.monotonic() - down_at)))
        cluster.start()
        for step in spooled_steps[30:]:
            sender.submit(round_rows(step, 100))
            time.sleep(0.05)
        time.sleep(2)
        for writer in writers:
            writer.stop.set()
        for writer in writers:
            writer.join(60)
        assert sender.close(timeout=60), sender.last_error

        # During the outage: quick 503s with the JSON error body, never a hang.
        assert len(probes) == 20
        for seconds, status, body in probes:
            assert status == 503 and body["error"]["type"] == "database_unavailable", body
            assert seconds < 5, probes
        # After it: the same process answers again (no restart needed), nothing lost or doubled.
        assert server.pid == pid and http.get("/healthz").status_code == 200
    assert [w.errors for w in writers] == [[], []]
    sdk_steps = sorted(s for w in writers for s in w.steps)
    assert len(sdk_steps) > 20
    assert stored(client, "sdk") == expected(sdk_steps, 200)
    assert stored(client, "spooled") == expected(spooled_steps, 100)
    wait_for(lambda: set(sdk_steps) <= streamed, 30, "the stream to catch up after the restart")
    wait_for(lambda: set(sdk_steps) <= raw_steps or bool(raw_end), 30, "the raw stream")
    assert raw_end == [] and set(sdk_steps) <= raw_steps  # the same connection throughout
    stop_following.set()
    follower.join(10)
    raw_follower.join(10)
    assert not follower.is_alive() and not raw_follower.is_alive()
    client.close()
    log = server.log_path.read_text(errors="replace")
    assert "database unavailable on" in log  # one line per refused request, no traceback
    assert "Exception in ASGI application" not in log, server.log_tail(80)


# -- 3. the disk under the spool is full ----------------------------------------------------------
def run_child(mode: str, server: ServerHandle, key: str, job_id: str, spool_dir: Path) -> Any:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(spool_dir), server.base_url, key, job_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FINETUNE_LAB_API_KEY": ""},
    )


def test_full_disk_from_the_start_training_goes_on_and_rounds_arrive_from_memory(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server("sqlite", extra_env=NO_LIMIT)
    key = server.create_key("fulldisk")
    child = run_child("recorder", server, key, "t-full", tmp_path / "spool")
    out, err = child.communicate(timeout=180)
    assert child.returncode == 0, err[-3000:]
    assert json.loads(out.splitlines()[-1]) == {"delivered": True, "dropped": 0}
    assert "File too large" in err and "round kept in memory" in err  # the disk really refused
    assert "Traceback" not in err, err[-3000:]
    with FinetuneLabClient(api_key=key, base_url=server.base_url) as client:
        job = client.jobs.get("t-full")
        assert (job.name, job.status, job.prediction_count) == ("full disk", "completed", 40)
        assert job.config["predictions"]["sample_count"] == 8
        steps = Counter(row.step for row in client.training_predictions.iter("t-full"))
    assert steps == {0: 8, 10: 8, 20: 8, 30: 8, 40: 8}
    assert not any((tmp_path / "spool").rglob("*.json"))  # nothing was written


def test_full_disk_and_server_down_memory_holds_20000_rows_then_drops_with_an_error(
    make_server: MakeServer, tmp_path: Path
) -> None:
    server = make_server("sqlite", extra_env=NO_LIMIT)
    key = server.create_key("overflow")
    server.stop()
    child = run_child("overflow", server, key, "t-overflow", tmp_path / "spool")
    assert child.stdout is not None and child.stdin is not None
    first = json.loads(child.stdout.readline())
    assert first == {"dropped": 1_000}  # 105 rounds of 200: 100 fit in memory, 5 do not
    server.start()
    child.stdin.write("go\n")
    child.stdin.flush()
    out, err = child.communicate(timeout=180)
    assert child.returncode == 0, err[-3000:]
    assert json.loads(out.splitlines()[-1]) == {"delivered": True, "dropped": 1_000}
    assert err.count("memory buffer is full") == 5, err[-3000:]
    assert "1000 predictions dropped so far" in err
    with FinetuneLabClient(api_key=key, base_url=server.base_url) as client:
        job = client.jobs.get("t-overflow")
        assert (job.status, job.prediction_count, job.round_count) == ("completed", 20_000, 100)
        steps = Counter(row.step for row in client.training_predictions.iter("t-overflow"))
    assert steps == dict.fromkeys(range(100), 200)  # the first rounds were kept, in order


# -- 4. clients that drop their event stream ------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_sockets(pid: int) -> int:
    """Sockets only: a stream left behind holds its client's socket, while the database pool
    may open another SQLite connection (file and WAL) at any time, leak or not."""
    fds = f"/proc/{pid}/fd"
    links = []
    for fd in os.listdir(fds):
        with contextlib.suppress(FileNotFoundError):  # closed since the listing
            links.append(os.readlink(f"{fds}/{fd}"))
    return sum(link.startswith("socket:") for link in links)


def drop_stream(port: int, key: str, path: str, *, read: int, reset: bool) -> None:
    """Open a stream on a raw socket, read `read` bytes of it, then vanish."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n\r\n"
    sock.sendall(request.encode())
    received = b""
    while len(received) < read:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the stream"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    if reset:  # SO_LINGER 0: close() sends RST, as when a client machine dies
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_dropped_streams_are_freed(make_server: MakeServer) -> None:
    # Streams re-read every 50 ms here: a stream left running after its client went away
    # would show up as CPU time of an otherwise idle server.
    env = {**NO_LIMIT, "FINETUNE_LAB_STREAM_POLL_S": "0.05", "FINETUNE_LAB_STREAM_HEARTBEAT_S": "1"}
    server = make_server("sqlite", extra_env=env)
    key = server.create_key("dropper")
    pid = server.pid
    assert pid is not None
    big = [{**row, "prompt": "p" * 2_000} for row in round_rows(1, 1_000)]  # a ~4 MB event
    with FinetuneLabClient(api_key=key, base_url=server.base_url) as client:
        client.jobs.create(id="drops")
        client.training_predictions.create("drops", big)
        sockets_before = open_sockets(pid)
        for n in range(50):
            # Half drop right after the first heartbeat, half in the middle of the big event;
            # half with a reset (RST), half with a plain close.
            query = "?last_event_id=0" if n % 2 else ""
            path = f"{PRED}/drops/stream{query}"
            drop_stream(server.port, key, path, read=64 * 1024 if n % 2 else 1, reset=n % 4 < 2)
        time.sleep(1.5)  # let the server notice
        idle_start = cpu_seconds(pid)
        time.sleep(2.0)
        idle_cpu = cpu_seconds(pid) - idle_start
        # 50 leaked streams polling 20 times a second would burn far more than this.
        assert idle_cpu < 0.3, f"idle server used {idle_cpu:.2f} s CPU in 2 s"
        assert open_sockets(pid) <= sockets_before + 2, (sockets_before, open_sockets(pid))

        # The server still streams and ingests.
        events = client.training_predictions.stream("drops")
        assert next(events).event == "heartbeat"
        client.training_predictions.create("drops", round_rows(2, 10))
        kinds = [next(events).event for _ in range(2)]
        assert kinds == ["predictions", "round_complete"]
        events.close()  # type: ignore[attr-defined]
        assert client.training_predictions.get("drops", limit=1).total_count == 1_010
    assert_clean_log(server)
