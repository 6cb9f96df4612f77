"""`GET /api/training/predictions/{job_id}/stream` (SSE) against the live server, both backends."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from _support.appserver import ServerHandle
from _support.infra import MakeServer

from ._helpers import JOBS, PRED, assert_error, create_job, ingest, list_page, row
from ._sse import EventReader


def _reader(server: ServerHandle, key: str, job_id: str, **kwargs: object) -> EventReader:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return EventReader(server.base_url, f"{PRED}/{job_id}/stream", headers, **kwargs)  # type: ignore[arg-type]


def test_stream_sends_each_ingest_as_events_with_ids(
    server: ServerHandle, api_key: str, http: httpx.Client, unique_job_id: str
) -> None:
    create_job(http, unique_job_id)
    with _reader(server, api_key, unique_job_id) as stream:
        assert stream.response is not None
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        hello = stream.next()
        assert hello.event == "heartbeat"
        assert hello.data["job_id"] == unique_job_id
        assert hello.data["last_event_id"] == hello.id == 0  # a job without events
        batch = [row(1, 10, i, prediction=f"answer {i}", ground_truth="answer 0") for i in range(3)]
        batch += [row(2, 20, 0, prediction="x", ground_truth="x")]
        ingest(http, unique_job_id, batch)

        preds = stream.next_of("predictions")
        assert preds.data["count"] == 4 and preds.data["truncated"] is False
        assert preds.data["rounds"] == [
            {"epoch": 1, "step": 10, "count": 3},
            {"epoch": 2, "step": 20, "count": 1},
        ]
        listed = list_page(http, unique_job_id, limit=100)["predictions"]
        assert preds.data["predictions"] == listed  # rows exactly as the list API returns them

        rounds = [stream.next_of("round_complete"), stream.next_of("round_complete")]
        by_step = {
            p["step"]: p
            for p in http.get(f"{PRED}/{unique_job_id}/trends", params={"group_by": "step"}).json()[
                "trends"
            ]
        }
        for event in rounds:
            expected = {"job_id": unique_job_id, **by_step[event.data["step"]]}
            assert event.data == expected
        assert rounds[0].data["sample_count"] == 3
        assert rounds[0].data["avg_exact_match"] == pytest.approx(1 / 3)
        ids = [preds.id, rounds[0].id, rounds[1].id]
        assert ids == sorted(ids) and len(set(ids)) == 3 and ids[0] > 0
        assert any(line.startswith("retry: ") for line in stream.raw_lines)


def test_last_event_id_replays_what_was_missed(
    server: ServerHandle, api_key: str, http: httpx.Client, unique_job_id: str
) -> None:
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(0, 0, i) for i in range(2)])
    with _reader(server, api_key, unique_job_id) as stream:
        first_position = stream.next().id  # the heartbeat: newest event so far
    assert first_position > 0
    ingest(http, unique_job_id, [row(1, 5, i, prediction="g") for i in range(2)])
    ingest(http, unique_job_id, [row(2, 9, 0)])

    def replay(**kwargs: object) -> list:
        with _reader(server, api_key, unique_job_id, **kwargs) as stream:
            assert stream.next().event == "heartbeat"
            got = [stream.next_of("predictions")]
            got.append(stream.next_of("round_complete"))
            got.append(stream.next_of("predictions"))
            got.append(stream.next_of("round_complete"))
            return got

    by_header = replay(headers={"Last-Event-ID": str(first_position)})
    by_query = replay(params={"last_event_id": first_position})
    assert [(e.id, e.event) for e in by_header] == [(e.id, e.event) for e in by_query]
    assert [e.data["rounds"][0]["step"] for e in by_header if e.event == "predictions"] == [5, 9]
    assert all(e.id > first_position for e in by_header)
    # The header wins over the query parameter (EventSource sends it when reconnecting).
    newest = by_header[-1].id
    with _reader(
        server,
        api_key,
        unique_job_id,
        headers={"Last-Event-ID": str(newest)},
        params={"last_event_id": 0},
    ) as stream:
        hello = stream.next()
        assert (hello.event, hello.id) == ("heartbeat", newest)
        ingest(http, unique_job_id, [row(3, 12, 0)])
        assert stream.next_of("predictions").data["rounds"][0]["step"] == 12


def test_a_batch_event_names_only_its_own_rows(
    server: ServerHandle, api_key: str, http: httpx.Client, unique_job_id: str
) -> None:
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(1, 1, i) for i in (1, 3, 5)])
    with _reader(server, api_key, unique_job_id) as stream:
        ingest(http, unique_job_id, [row(1, 1, i, prediction="even") for i in (0, 2, 4, 6)])
        event = stream.next_of("predictions")
    assert [p["sample_index"] for p in event.data["predictions"]] == [0, 2, 4, 6]
    assert {p["prediction"] for p in event.data["predictions"]} == {"even"}


def test_big_batches_are_capped_and_marked_truncated(
    server: ServerHandle, api_key: str, http: httpx.Client, unique_job_id: str
) -> None:
    create_job(http, unique_job_id)
    with _reader(server, api_key, unique_job_id) as stream:
        ingest(http, unique_job_id, [row(1, 1, i) for i in range(1500)])
        event = stream.next_of("predictions")
    assert event.data["count"] == 1500
    assert event.data["truncated"] is True
    assert [p["sample_index"] for p in event.data["predictions"]] == list(range(1000))


def test_stream_auth_matches_the_other_prediction_routes(
    server: ServerHandle, api_key: str, http: httpx.Client, unique_job_id: str
) -> None:
    job = create_job(http, unique_job_id)
    path = f"{PRED}/{unique_job_id}/stream"
    with httpx.Client(base_url=server.base_url, timeout=10) as anon:
        assert_error(anon.get(path), 401)
        assert_error(anon.get(path, headers={"Authorization": "Bearer flk_nope"}), 401)
        assert_error(anon.get(path, headers={"Authorization": f"Bearer {job['job_token']}"}), 403)
    other = server.create_key(f"bob-{uuid.uuid4().hex[:6]}", scopes="training")
    with httpx.Client(base_url=server.base_url, timeout=10, headers={"X-API-Key": other}) as bob:
        assert_error(bob.get(path), 404)  # someone else's job: never say it exists
    assert_error(http.get(f"{PRED}/no-such-{unique_job_id}/stream"), 404)
    no_training = server.create_key(f"carol-{uuid.uuid4().hex[:6]}", scopes="production")
    with httpx.Client(base_url=server.base_url, timeout=10) as carol:
        assert_error(carol.get(path, headers={"X-API-Key": no_training}), 403)
    assert_error(http.get(path, headers={"Last-Event-ID": "abc"}), 422)
    assert_error(http.get(path, params={"last_event_id": -1}), 422)
    session = http.post("/api/auth/session").json()["token"]
    with _reader(server, session, unique_job_id) as stream:
        assert stream.response is not None and stream.response.status_code == 200
        assert stream.next().event == "heartbeat"


def test_stream_is_in_openapi_as_event_stream(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    operation = schema["paths"]["/api/training/predictions/{job_id}/stream"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"job_id", "last_event_id", "Last-Event-ID"} <= names
    components = schema["components"]["schemas"]
    assert {"PredictionsEvent", "RoundCompleteEvent", "HeartbeatEvent"} <= set(components)


def test_heartbeats_and_the_end_of_a_deleted_job(make_server: MakeServer) -> None:
    srv = make_server("sqlite", extra_env={"FINETUNE_LAB_STREAM_HEARTBEAT_S": "0.3"})
    key = srv.create_key("hb")
    job_id = f"hb-{uuid.uuid4().hex[:8]}"
    with srv.client(key) as http:
        create_job(http, job_id)
        ingest(http, job_id, [row(1, 1, 0)])
        with _reader(srv, key, job_id) as stream:
            started = time.monotonic()
            beats = [stream.next(timeout=3) for _ in range(3)]
            assert [b.event for b in beats] == ["heartbeat"] * 3
            assert time.monotonic() - started < 3
            assert {b.id for b in beats} == {beats[0].id} and beats[0].id > 0
            assert http.delete(f"{JOBS}/{job_id}").status_code == 200
            assert stream.ended(timeout=5)  # the next heartbeat's re-check ends it
        # Its events went with it: a new job under the same id replays nothing old.
        create_job(http, job_id)
        with _reader(srv, key, job_id, params={"last_event_id": 0}) as stream:
            assert stream.next().event == "heartbeat"
            ingest(http, job_id, [row(7, 70, 0)])
            assert stream.next_of("predictions").data["rounds"][0]["step"] == 70


def test_events_reach_clients_of_another_server_process(
    pg_server: ServerHandle, tmp_path: object, make_server: MakeServer
) -> None:
    """Two processes on one PostgreSQL: ingest through one, the other's stream gets it at once
    (LISTEN/NOTIFY; its safety poll is set to a minute so only NOTIFY can explain it)."""
    second = ServerHandle(
        backend="postgresql",
        database_url=pg_server.database_url,
        home=pg_server.home.parent / f"second-{uuid.uuid4().hex[:8]}",
        extra_env={"FINETUNE_LAB_STREAM_POLL_S": "60"},
    )
    second.start()
    try:
        key = pg_server.create_key(f"multi-{uuid.uuid4().hex[:6]}")
        job_id = f"mp-{uuid.uuid4().hex[:8]}"
        with pg_server.client(key) as first:
            create_job(first, job_id)
            with _reader(second, key, job_id) as stream:
                assert stream.next().event == "heartbeat"
                for step in (1, 2):
                    started = time.monotonic()
                    ingest(first, job_id, [row(step, step, i) for i in range(5)])
                    event = stream.next_of("predictions", timeout=5)
                    assert event.data["rounds"][0]["step"] == step
                    assert time.monotonic() - started < 2.0
                    assert stream.next_of("round_complete").data["step"] == step
    finally:
        second.stop()
