"""`client.training_predictions.stream()` (sync and async) against the live server."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator

import pytest

from _support.appserver import ServerHandle
from _support.infra import MakeServer
from finetune_lab import AsyncFinetuneLabClient, FinetuneLabClient, NotFoundError
from finetune_lab.client.resources.training_predictions import StreamEvent
from finetune_lab.schema import HeartbeatEvent, PredictionsEvent, RoundCompleteEvent


def _rows(epoch: int, step: int, n: int, prediction: str = "four") -> list[dict]:
    return [
        {
            "epoch": epoch,
            "step": step,
            "sample_index": i,
            "prompt": f"2 + 2 ({i})",
            "prediction": prediction,
            "ground_truth": "four",
        }
        for i in range(n)
    ]


def _next(events: Iterator[StreamEvent], kind: str) -> StreamEvent:
    for event in events:
        if event.event == kind:
            return event
        assert event.event == "heartbeat", event
    raise AssertionError("stream ended")


def test_sync_stream_yields_typed_events(client: FinetuneLabClient, unique_job_id: str) -> None:
    client.jobs.create(id=unique_job_id)
    events = client.training_predictions.stream(unique_job_id)
    try:
        hello = next(events)
        assert hello.event == "heartbeat" and isinstance(hello.data, HeartbeatEvent)
        assert hello.data.job_id == unique_job_id
        client.training_predictions.create(unique_job_id, _rows(1, 10, 3))
        preds = _next(events, "predictions")
        assert isinstance(preds.data, PredictionsEvent)
        assert [p.sample_index for p in preds.data.predictions] == [0, 1, 2]
        assert preds.data.predictions[0].exact_match == 1.0
        done = _next(events, "round_complete")
        assert isinstance(done.data, RoundCompleteEvent)
        assert (done.data.step, done.data.sample_count, done.data.avg_exact_match) == (10, 3, 1.0)
        assert done.id > preds.id > hello.id
        assert done.data.raw["job_id"] == unique_job_id
    finally:
        events.close()  # type: ignore[attr-defined]

    # Resuming from an id replays exactly what came after it.
    replay = client.training_predictions.stream(unique_job_id, last_event_id=preds.id)
    try:
        assert next(replay).event == "heartbeat"
        again = _next(replay, "round_complete")
        assert again.id == done.id and again.data == done.data
    finally:
        replay.close()  # type: ignore[attr-defined]


def test_sync_stream_of_an_unknown_job_raises(client: FinetuneLabClient) -> None:
    with pytest.raises(NotFoundError):
        next(client.training_predictions.stream(f"missing-{uuid.uuid4().hex}"))


@pytest.mark.anyio
async def test_async_stream_yields_typed_events(
    async_client: AsyncFinetuneLabClient, unique_job_id: str
) -> None:
    await async_client.jobs.create(id=unique_job_id)
    events = async_client.training_predictions.stream(unique_job_id)
    try:
        hello = await events.__anext__()
        assert isinstance(hello.data, HeartbeatEvent)
        await async_client.training_predictions.create(unique_job_id, _rows(2, 20, 2, "five"))
        kinds: list[StreamEvent] = []
        async for event in events:
            if event.event != "heartbeat":
                kinds.append(event)
            if len(kinds) == 2:
                break
        preds, done = kinds
        assert isinstance(preds.data, PredictionsEvent) and preds.data.count == 2
        assert isinstance(done.data, RoundCompleteEvent)
        assert done.data.avg_exact_match == 0.0 and done.data.epoch == 2
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def test_stream_resumes_after_the_server_restarts(make_server: MakeServer) -> None:
    """A lost connection is resumed with the last id: events ingested around the restart
    arrive once each, in order."""
    srv: ServerHandle = make_server("sqlite")
    key = srv.create_key("reconnect")
    job_id = f"rc-{uuid.uuid4().hex[:8]}"
    received: queue.Queue[StreamEvent | BaseException] = queue.Queue()
    with FinetuneLabClient(api_key=key, base_url=srv.base_url, timeout=10) as writer:
        writer.jobs.create(id=job_id)

        def consume() -> None:
            with FinetuneLabClient(api_key=key, base_url=srv.base_url, timeout=10) as reader:
                try:
                    for event in reader.training_predictions.stream(job_id, max_reconnects=20):
                        if event.event != "heartbeat":
                            received.put(event)
                except BaseException as exc:
                    received.put(exc)

        threading.Thread(target=consume, daemon=True).start()
        first_batch_seen = None
        for _ in range(50):  # the stream may not be connected yet: ingest until it sees one
            writer.training_predictions.create(job_id, _rows(1, 1, 2))
            try:
                first_batch_seen = received.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        assert isinstance(first_batch_seen, StreamEvent), first_batch_seen
        srv.restart()
        writer.training_predictions.create(job_id, _rows(2, 2, 2))
        writer.training_predictions.create(job_id, _rows(3, 3, 2))
        got: list[StreamEvent] = []
        while not (got and got[-1].event == "round_complete" and got[-1].data.step == 3):
            item = received.get(timeout=30)
            assert isinstance(item, StreamEvent), item
            got.append(item)
        after = [e for e in got if e.id > first_batch_seen.id]
        ids = [e.id for e in after]
        assert ids == sorted(set(ids))  # nothing repeated, in order
        steps = [e.data.rounds[0].step for e in after if e.event == "predictions"]
        assert steps[-2:] == [2, 3]
