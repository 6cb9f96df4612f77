"""Credentials and rate limits come before bodies (issue items 4, 9, 10): a request refused
401 or 429 is answered from its headers, its body never read; chunked bodies over the cap are
413; one key's budget is shared by every server process through Redis."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from _support.appserver import ServerHandle
from _support.infra import MakeServer
from _support.net import free_port
from _support.redis import RedisServer
from finetune_lab.schema import MAX_BODY_BYTES

from ._helpers import JOBS, PRED, assert_error, new_id, row

WHOAMI = "/api/auth/whoami"
JSON_TYPE = {"Content-Type": "application/json"}


def headers_only_post(server: ServerHandle, path: str, headers: dict[str, str]) -> httpx.Response:
    """POST that declares a 1 MB JSON body but sends only its first byte, then waits for the
    answer: a server that reads bodies before checking credentials never answers (timeout)."""
    port = urlsplit(server.base_url).port
    assert port is not None
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Content-Length: 1000000",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n{").encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer: {raw!r}"
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer_headers = dict(line.split(": ", 1) for line in header_lines)
        length = int(answer_headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-answer"
            body += chunk
    return httpx.Response(int(status_line.split()[1]), headers=answer_headers, content=body)


# -- refused before the body ---------------------------------------------------------------


@pytest.mark.parametrize("path", [JOBS, f"{PRED}/some-job", "/api/models", "/v1/chat/completions"])
def test_missing_or_bad_credentials_are_refused_before_the_body(
    server: ServerHandle, path: str
) -> None:
    assert_error(headers_only_post(server, path, {}), 401, "unauthorized")
    bad = headers_only_post(server, path, {"X-API-Key": "flk_" + "x" * 43})
    error = assert_error(bad, 401, "unauthorized")
    assert "revoked" in error["message"]
    # The refusal still carries the API's headers.
    assert bad.headers["cache-control"] == "no-store"


def test_rate_limited_key_is_refused_before_the_body(make_server: MakeServer) -> None:
    limited = make_server("sqlite", extra_env={"FINETUNE_LAB_RATE_LIMIT": "3/minute"})
    alice, bob = limited.create_key("alice"), limited.create_key("alice", name="second")
    with limited.client(alice) as http:
        assert [http.get(JOBS).status_code for _ in range(3)] == [200] * 3
        refused = headers_only_post(limited, JOBS, {"X-API-Key": alice})
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1
        # A full, valid body over the limit is refused too, and nothing is written.
        job_id = new_id()
        assert_error(http.post(JOBS, json={"id": job_id}), 429, "rate_limited")
    with limited.client(bob) as other:
        assert_error(other.get(f"{JOBS}/{job_id}"), 404)


def test_unauthenticated_big_bodies_leave_the_server_responsive(server: ServerHandle) -> None:
    """30 MiB of JSON costs seconds to parse; a server that parsed it before refusing the
    missing credentials would stall every other request that long (measured here first)."""
    body = b'{"name": "x", "config": {"x": [' + b"0," * (15 * 1024 * 1024 - 20) + b"0]}}"
    assert 29 * 1024 * 1024 < len(body) < MAX_BODY_BYTES
    started = time.perf_counter()
    json.loads(body)
    parse_s = time.perf_counter() - started  # what one parse on this machine costs right now

    statuses: list[int] = []
    done = threading.Event()

    def flood() -> None:
        try:
            with httpx.Client(base_url=server.base_url, timeout=120) as anonymous:
                for _ in range(2):
                    sent = anonymous.post(JOBS, content=body, headers=JSON_TYPE)
                    statuses.append(sent.status_code)
        finally:
            done.set()

    latencies: list[float] = []
    with httpx.Client(base_url=server.base_url, timeout=60) as probe:
        probe.get("/healthz")
        sender = threading.Thread(target=flood)
        sender.start()
        while not done.is_set():
            t0 = time.perf_counter()
            assert probe.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)
        sender.join()
    assert statuses == [401, 401]
    assert len(latencies) >= 3
    assert max(latencies) < parse_s / 2, (max(latencies), parse_s)


# -- chunked bodies over the cap -----------------------------------------------------------


def _chunked(total: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    yield b'{"name": "'
    sent = 10
    while sent < total:
        yield b"x" * chunk
        sent += chunk


@pytest.mark.parametrize("path", [JOBS, f"{PRED}/chunked-job", "/api/models"])
def test_chunked_body_over_the_cap_is_413(sqlite_server: ServerHandle, path: str) -> None:
    key = sqlite_server.create_key(f"chunky-{uuid.uuid4().hex[:8]}")
    with sqlite_server.client(key) as http:
        if path.startswith(PRED):
            assert http.post(JOBS, json={"id": "chunked-job"}).status_code in (200, 201)
        resp = http.post(
            path,
            content=_chunked(MAX_BODY_BYTES + 1024 * 1024),
            headers={"Content-Type": "application/json"},
        )
        error = assert_error(resp, 413, "payload_too_large")
        assert str(MAX_BODY_BYTES) in error["message"]
        # Under the cap, the same route still works normally on the same connection.
        if path == JOBS:
            assert http.post(JOBS, json={"id": new_id()}).status_code == 201
        if path.startswith(PRED):
            ok = http.post(path, json={"predictions": [row(1, 0, 0)]})
            assert ok.status_code == 200, ok.text


# -- one budget across processes -----------------------------------------------------------


def _spend(servers: list[ServerHandle], key: str, rounds: int) -> list[int]:
    clients = [s.client(key) for s in servers]
    try:
        return [c.get(WHOAMI).status_code for _ in range(rounds) for c in clients]
    finally:
        for c in clients:
            c.close()


def test_two_processes_share_one_budget_through_redis(
    make_server: MakeServer, redis: RedisServer
) -> None:
    env = {"FINETUNE_LAB_RATE_LIMIT": "10/minute", "FINETUNE_LAB_RATE_LIMIT_STORAGE": redis.url}
    first = make_server("postgresql", extra_env=env)
    second = make_server("postgresql", extra_env=env, database_url=first.database_url)
    key = first.create_key("alice")
    codes = _spend([first, second], key, 6)
    assert codes.count(200) == 10 and codes.count(429) == 2, codes
    assert codes[-2:] == [429, 429]
    # A job token spends the same shared budget: refused on both processes.
    other = first.create_key("alice", name="jobs")
    with first.client(other) as http:
        job = http.post(JOBS, json={"id": new_id()}).json()
    token = {"Authorization": f"Bearer {job['job_token']}"}
    codes = [
        httpx.post(
            s.base_url + f"{PRED}/{job['id']}", json={"predictions": [row(1, i, 0)]}, headers=token
        ).status_code
        for i, s in enumerate([first, second] * 5)
    ]
    assert codes == [200] * 9 + [429], codes


def test_without_redis_each_process_counts_alone(make_server: MakeServer) -> None:
    """The default (memory://): what the Redis store exists to fix, pinned as documented."""
    env = {"FINETUNE_LAB_RATE_LIMIT": "10/minute"}
    first = make_server("postgresql", extra_env=env)
    second = make_server("postgresql", extra_env=env, database_url=first.database_url)
    codes = _spend([first, second], first.create_key("alice"), 6)
    assert codes == [200] * 12


def test_unreachable_redis_fails_open_to_per_process_limits(
    make_server: MakeServer, redis: RedisServer
) -> None:
    port = free_port()  # nothing listens here yet
    url = f"redis://127.0.0.1:{port}/0"
    env = {"FINETUNE_LAB_RATE_LIMIT": "3/minute", "FINETUNE_LAB_RATE_LIMIT_STORAGE": url}
    first = make_server("sqlite", extra_env=env)
    key = first.create_key("alice")
    assert _spend([first], key, 4) == [200, 200, 200, 429]  # still limited, in this process
    log = first.log_path.read_text()
    assert log.count("is unreachable") == 1 and url in log

    # Redis comes up: after the retry pause, the windows are shared again.
    private = RedisServer(port=port)
    try:
        second = make_server("sqlite", extra_env=env, database_url=first.database_url)
        time.sleep(5.5)  # rate_limit.SHARED_RETRY_S
        fresh = first.create_key("alice", name="after")
        codes = _spend([first, second], fresh, 2)
        assert codes == [200, 200, 200, 429], codes
        assert "answers again" in first.log_path.read_text()
    finally:
        private.close()


def test_unsupported_storage_refuses_to_start(make_server: MakeServer) -> None:
    # make_server fails the test with the server's log tail when it cannot start.
    with pytest.raises(pytest.fail.Exception, match="unsupported rate-limit storage"):
        make_server(
            "sqlite", extra_env={"FINETUNE_LAB_RATE_LIMIT_STORAGE": "memcached://127.0.0.1:1"}
        )
