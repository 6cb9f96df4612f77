"""How the event streams recover, against a simulated faulty server (httpx.MockTransport).

The live server cannot be made to answer 429 or 503 on demand; what a healthy server streams
is tested in test_stream.py. One flow (`client/_streaming.py`) drives both clients, so the sync
and async streams must wait and resume alike.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from finetune_lab import (
    AsyncFinetuneLabClient,
    FinetuneLabClient,
    InternalServerError,
    NotFoundError,
)
from finetune_lab.client import _transport
from finetune_lab.schema import HeartbeatEvent

from .test_retries import Script, error

NOW = "2025-01-01T00:00:00Z"


def sse(event_id: int) -> httpx.Response:
    data = orjson.dumps({"job_id": "j1", "last_event_id": event_id, "time": NOW})
    body = b"event: heartbeat\nid: %d\ndata: %s\n\n" % (event_id, data)
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


def not_found() -> httpx.Response:
    body = {"error": {"type": "not_found", "message": "job deleted"}}
    return httpx.Response(404, json=body)


def scripted() -> Script:
    """503, then 429 asking for 7 s, then one event and a clean end, then 404 on resuming."""
    return Script(error(503), error(429, {"Retry-After": "7"}), sse(5), not_found())


def check_waits(script: Script, slept: list[float]) -> None:
    assert len(script.requests) == 4
    assert 0.375 <= slept[0] <= 0.5  # first failure: backoff
    assert slept[1] == 7.0  # the server's Retry-After, not the backoff
    assert 0.375 <= slept[2] <= 0.5  # an event arrived in between: the count starts over
    assert "last_event_id" not in script.requests[2].url.params
    assert script.requests[3].url.params["last_event_id"] == "5"  # resumed after the event


def test_sync_stream_waits_out_429_and_5xx_then_resumes(sleeps: list[float]) -> None:
    script = scripted()
    http = httpx.Client(transport=httpx.MockTransport(script))
    client = FinetuneLabClient(api_key="k", base_url="http://fake", max_retries=0, http_client=http)
    events = client.training_predictions.stream("j1")
    first = next(events)
    assert first.id == 5 and isinstance(first.data, HeartbeatEvent)
    with pytest.raises(NotFoundError):
        next(events)
    check_waits(script, sleeps)


@pytest.mark.anyio
async def test_async_stream_waits_out_429_and_5xx_then_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def fake(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(_transport, "_async_sleep", fake)
    script = scripted()
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    client = AsyncFinetuneLabClient(
        api_key="k", base_url="http://fake", max_retries=0, http_client=http
    )
    events = client.training_predictions.stream("j1")
    first = await events.__anext__()
    assert first.id == 5 and isinstance(first.data, HeartbeatEvent)
    with pytest.raises(NotFoundError):
        await events.__anext__()
    check_waits(script, slept)


def test_stream_gives_up_after_max_reconnects_failures_in_a_row(sleeps: list[float]) -> None:
    script = Script(error(503), error(503), error(503))
    http = httpx.Client(transport=httpx.MockTransport(script))
    client = FinetuneLabClient(api_key="k", base_url="http://fake", max_retries=0, http_client=http)
    with pytest.raises(InternalServerError):
        next(client.training_predictions.stream("j1", max_reconnects=2))
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_predict_stream_is_not_resumed(sleeps: list[float]) -> None:
    """A generation cannot be resumed: its stream raises the first failure and stops at the
    end of the body."""
    script = Script(error(503))
    http = httpx.Client(transport=httpx.MockTransport(script))
    client = FinetuneLabClient(api_key="k", base_url="http://fake", max_retries=0, http_client=http)
    with pytest.raises(InternalServerError):
        next(client.predict("m", "hi", stream=True))
    assert sleeps == []
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [],
    }
    body = b"data: " + orjson.dumps(chunk) + b"\n\n"  # no [DONE]: the body just ends
    script = Script(httpx.Response(200, content=body))
    http = httpx.Client(transport=httpx.MockTransport(script))
    client = FinetuneLabClient(api_key="k", base_url="http://fake", max_retries=0, http_client=http)
    assert [c.id for c in client.predict("m", "hi", stream=True)] == ["c"]
    assert len(script.requests) == 1 and sleeps == []
