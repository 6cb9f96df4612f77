"""A stream only ever delivers rows of a job its credentials own, even when the job is deleted
and its id is taken by someone else while the stream is open (one process or several)."""

from __future__ import annotations

import json
import queue
import socket
import time
import uuid
from urllib.parse import urlsplit

import httpx

from _support.appserver import ServerHandle
from _support.infra import MakeServer

from ._helpers import JOBS, PRED, assert_error, create_job, ingest, row
from ._sse import Event, EventReader

SECRET = "alice's private prompt"


def _reader(server: ServerHandle, key: str, job_id: str, **kwargs: object) -> EventReader:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return EventReader(server.base_url, f"{PRED}/{job_id}/stream", headers, **kwargs)  # type: ignore[arg-type]


def _drain(stream: EventReader, seconds: float) -> tuple[list[Event], bool]:
    """Everything the stream sends for up to `seconds`, and whether the server ended it."""
    got: list[Event] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = stream.events.get(timeout=left)
        except queue.Empty:
            break
        if item is None:
            return got, True
        if not isinstance(item, Event):
            raise AssertionError(f"stream failed: {item!r}")
        got.append(item)
    return got, False


def _take_over(bob: httpx.Client, alice: httpx.Client, job_id: str) -> None:
    """Bob deletes his job; Alice creates one under the same id and writes into it."""
    assert bob.delete(f"{JOBS}/{job_id}").status_code == 200
    create_job(alice, job_id)
    ingest(alice, job_id, [row(5, 50, i, prompt=SECRET, prediction=SECRET) for i in range(3)])


def _assert_nothing_of_alice(events: list[Event]) -> None:
    for event in events:
        assert SECRET not in json.dumps(event.data), event
        assert event.event == "heartbeat", event


def test_an_open_stream_never_delivers_the_next_owner_of_its_job_id(
    server: ServerHandle, http: httpx.Client
) -> None:
    bob_key = server.create_key(f"bob-{uuid.uuid4().hex[:6]}", scopes="training")
    job_id = f"reuse-{uuid.uuid4().hex[:8]}"
    with server.client(bob_key) as bob:
        create_job(bob, job_id)
        ingest(bob, job_id, [row(1, 10, 0, prompt="bob's prompt")])
        with _reader(server, bob_key, job_id, params={"last_event_id": 0}) as stream:
            assert stream.next().event == "heartbeat"
            assert stream.next_of("predictions").data["predictions"][0]["prompt"] == "bob's prompt"
            stream.next_of("round_complete")
            _take_over(bob, http, job_id)
            # Alice's ingest wakes Bob's stream: it must end, not deliver her rows.
            events, ended = _drain(stream, 8.0)
        _assert_nothing_of_alice(events)
        assert ended, "the stream of a job that changed hands must end"
        # Reconnecting (with the old position, as EventSource does) is 404: not his job.
        stale = events[-1].id if events else 0
        for headers in ({}, {"Last-Event-ID": str(stale)}):
            assert_error(bob.get(f"{PRED}/{job_id}/stream", headers=headers), 404)


def test_a_stream_opened_just_before_the_take_over_replays_nothing_of_it(
    server: ServerHandle, http: httpx.Client
) -> None:
    """Replay from 0 after the id changed hands under an open stream: none of the new rows."""
    bob_key = server.create_key(f"bob-{uuid.uuid4().hex[:6]}", scopes="training")
    job_id = f"reuse-{uuid.uuid4().hex[:8]}"
    with server.client(bob_key) as bob:
        create_job(bob, job_id)
        with _reader(server, bob_key, job_id, params={"last_event_id": 0}) as stream:
            assert stream.next().event == "heartbeat"
            _take_over(bob, http, job_id)
            ingest(http, job_id, [row(6, 60, 0, prompt=SECRET, prediction="x")])
            events, ended = _drain(stream, 8.0)
    _assert_nothing_of_alice(events)
    assert ended


def test_a_stream_on_another_process_never_delivers_the_next_owner(
    pg_server: ServerHandle, make_server: MakeServer
) -> None:
    """Two processes on one PostgreSQL: the NOTIFY of Alice's ingest (through the first process)
    wakes Bob's stream on the second one; it must end without her rows."""
    second = ServerHandle(
        backend="postgresql",
        database_url=pg_server.database_url,
        home=pg_server.home.parent / f"second-{uuid.uuid4().hex[:8]}",
        extra_env={"FINETUNE_LAB_STREAM_POLL_S": "60"},
    )
    second.start()
    try:
        bob_key = pg_server.create_key(f"bob-{uuid.uuid4().hex[:6]}", scopes="training")
        alice_key = pg_server.create_key(f"alice-{uuid.uuid4().hex[:6]}", scopes="training")
        job_id = f"reuse-{uuid.uuid4().hex[:8]}"
        with pg_server.client(bob_key) as bob, pg_server.client(alice_key) as alice:
            create_job(bob, job_id)
            with _reader(second, bob_key, job_id) as stream:
                assert stream.next().event == "heartbeat"
                ingest(bob, job_id, [row(1, 1, 0, prompt="bob's prompt")])
                assert (
                    stream.next_of("predictions", timeout=5).data["predictions"][0]["prompt"]
                    == "bob's prompt"
                )
                stream.next_of("round_complete")
                _take_over(bob, alice, job_id)
                events, ended = _drain(stream, 8.0)
        _assert_nothing_of_alice(events)
        assert ended
    finally:
        second.stop()


def test_the_same_owner_recreating_a_job_continues_with_the_new_rows_only(
    server: ServerHandle, api_key: str, http: httpx.Client, unique_job_id: str
) -> None:
    """What the training spool does after losing its job: delete or loss, then create the same
    id again. Event ids are never reused, so the old position replays only new events."""
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(1, 1, 0, prompt="old")])
    with _reader(server, api_key, unique_job_id) as stream:
        position = stream.next().id
    assert position > 0
    assert http.delete(f"{JOBS}/{unique_job_id}").status_code == 200
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(1, 1, 0, prompt="new")])
    replay = {"Last-Event-ID": str(position)}
    with _reader(server, api_key, unique_job_id, headers=replay) as stream:
        assert stream.next().event == "heartbeat"
        event = stream.next_of("predictions")
    assert event.id > position
    assert [p["prompt"] for p in event.data["predictions"]] == ["new"]


def test_a_position_this_database_never_issued_replays_the_job_from_its_start(
    make_server: MakeServer,
) -> None:
    """A client that followed the job on a server that lost its database (the spool re-created
    the job on a fresh one) sends an id beyond any this database issued: it gets every event
    of the job instead of silently skipping until the ids catch up."""
    srv = make_server("sqlite")
    key = srv.create_key("fresh")
    job_id = f"fresh-{uuid.uuid4().hex[:8]}"
    with srv.client(key) as http:
        create_job(http, job_id)
        ingest(http, job_id, [row(0, 0, i) for i in range(2)])
        with _reader(srv, key, job_id, headers={"Last-Event-ID": "123456789"}) as stream:
            hello = stream.next()
            assert hello.event == "heartbeat" and hello.id == 0
            event = stream.next_of("predictions")
        assert event.data["count"] == 2


def _slow_get(server: ServerHandle, path: str, key: str) -> socket.socket:
    """A GET on a socket with a tiny receive buffer: the server can run ahead of this reader by
    its send buffer (≤ 4 MiB) and one chunk, not by whole export pages."""
    url = urlsplit(server.base_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.settimeout(60)
    sock.connect((url.hostname or "127.0.0.1", url.port or 80))
    request = f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nX-API-Key: {key}\r\n"
    sock.sendall((request + "Connection: close\r\n\r\n").encode())
    return sock


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    at = 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


def test_an_export_under_way_never_continues_into_the_next_owner(
    server: ServerHandle, http: httpx.Client
) -> None:
    """An export reads page after page (2,000 rows, one transaction each) as the client takes
    them. Bob's pages are ~8 MB; he reads slowly; the job changes hands after his first
    kilobytes: what follows must not be Alice's rows."""
    bob_key = server.create_key(f"bob-{uuid.uuid4().hex[:6]}", scopes="training")
    job_id = f"reuse-{uuid.uuid4().hex[:8]}"
    filler = "b" * 4_000
    with server.client(bob_key) as bob:
        create_job(bob, job_id)
        for start in (0, 2_000):
            ingest(bob, job_id, [row(0, 0, i, prompt=filler) for i in range(start, start + 2_000)])
        sock = _slow_get(server, f"{PRED}/{job_id}/export?format=jsonl", bob_key)
        with sock:
            received = bytearray()
            while len(received) < 64 * 1024:
                received += sock.recv(65536)
            _take_over(bob, http, job_id)
            ingest(http, job_id, [row(0, 0, i, prompt=SECRET) for i in range(2_000, 4_000)])
            while chunk := sock.recv(1 << 20):
                received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    lines = _dechunk(body).decode().splitlines()
    assert SECRET not in "".join(lines)
    assert 0 < len(lines) <= 4_000
    assert all(json.loads(line)["prompt"] == filler for line in lines)
