"""Retry policy against a simulated faulty server (httpx.MockTransport).

Everything that a healthy server can show is tested against the live server elsewhere; only
429/5xx sequences and what goes on the wire need a fake one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from finetune_lab import (
    APIConnectionError,
    AsyncFinetuneLabClient,
    FinetuneLabClient,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    __version__,
)
from finetune_lab.client import _transport

NOW = "2025-01-01T00:00:00Z"
JOB = {"id": "j1", "status": "pending", "created_at": NOW, "updated_at": NOW}
PAGE = {"job_id": "j1", "predictions": [], "total_count": 0, "epoch_count": 0, "next_cursor": None}
INGEST = {"job_id": "j1", "accepted": 1, "created": 1, "updated": 0}

Handler = Callable[[httpx.Request], httpx.Response]


def error(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {
        "error": {"type": "rate_limited" if status == 429 else "internal_error", "message": "m"}
    }
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """Answers each request with the next scripted response; records what was sent."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)


def sync_client(handler: Handler, max_retries: int = 2) -> FinetuneLabClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return FinetuneLabClient(
        api_key="flk_test", base_url="http://fake", max_retries=max_retries, http_client=http
    )


@pytest.fixture
def async_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def fake(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(_transport, "_async_sleep", fake)
    return slept


def test_5xx_on_get_is_retried_with_backoff(sleeps: list[float]) -> None:
    script = Script(error(503), error(502), httpx.Response(200, json=JOB))
    job = sync_client(script).jobs.get("j1")
    assert job.id == "j1"
    assert len(script.requests) == 3
    assert len(sleeps) == 2
    assert 0.375 <= sleeps[0] <= 0.5  # 0.5 s base minus up to 25 % jitter
    assert 0.75 <= sleeps[1] <= 1.0


def test_backoff_grows_and_is_capped() -> None:
    delays = [_transport.backoff_delay(n) for n in range(10)]
    assert all(6.0 <= d <= 8.0 for d in delays[5:])
    assert delays[0] < delays[2] < delays[4]


def test_5xx_gives_up_after_max_retries(sleeps: list[float]) -> None:
    script = Script(error(500), error(500), error(500))
    with pytest.raises(InternalServerError) as info:
        sync_client(script).training_predictions.epochs("j1")
    assert info.value.status_code == 500
    assert info.value.error_type == "internal_error"
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_max_retries_zero_never_retries(sleeps: list[float]) -> None:
    script = Script(error(503))
    with pytest.raises(InternalServerError):
        sync_client(script, max_retries=0).jobs.get("j1")
    assert len(script.requests) == 1 and sleeps == []


def test_5xx_on_non_idempotent_post_is_not_retried(sleeps: list[float]) -> None:
    script = Script(error(503), httpx.Response(201, json=JOB))
    with pytest.raises(InternalServerError):
        sync_client(script).jobs.create(name="x")  # no id: a retry could create a second job
    assert len(script.requests) == 1 and sleeps == []


def test_5xx_on_idempotent_posts_is_retried(sleeps: list[float]) -> None:
    script = Script(error(503), httpx.Response(200, json=JOB))
    assert sync_client(script).jobs.create(id="j1").id == "j1"  # explicit id: resume-safe
    script = Script(error(500), httpx.Response(200, json=INGEST))
    rows = [{"epoch": 0, "step": 0, "sample_index": 0, "prompt": "p", "prediction": "x"}]
    assert sync_client(script).training_predictions.create("j1", rows).created == 1  # upsert
    assert len(script.requests) == 2
    assert script.requests[0].content == script.requests[1].content


def test_429_honours_retry_after_even_for_posts(sleeps: list[float]) -> None:
    script = Script(error(429, {"Retry-After": "3"}), httpx.Response(201, json=JOB))
    assert sync_client(script).jobs.create(name="x").id == "j1"
    assert len(script.requests) == 2
    assert sleeps == [3.0]


def test_retry_after_is_capped_at_60_seconds(sleeps: list[float]) -> None:
    script = Script(error(429, {"Retry-After": "600"}), httpx.Response(200, json=PAGE))
    sync_client(script).training_predictions.get("j1")
    assert sleeps == [60.0]


def test_retry_after_on_503_and_http_date(sleeps: list[float]) -> None:
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    script = Script(
        error(503, {"Retry-After": "1.5"}),
        error(503, {"Retry-After": past}),
        httpx.Response(200, json=JOB),
    )
    sync_client(script).jobs.get("j1")
    assert sleeps == [1.5, 0.0]


def test_429_exhausted_raises_rate_limit_error(sleeps: list[float]) -> None:
    script = Script(*(error(429, {"Retry-After": "2"}) for _ in range(3)))
    with pytest.raises(RateLimitError) as info:
        sync_client(script).jobs.list()
    err = info.value
    assert (err.status_code, err.error_type, err.retry_after) == (429, "rate_limited", 2.0)
    assert sleeps == [2.0, 2.0]


def test_4xx_other_than_429_is_not_retried(sleeps: list[float]) -> None:
    body = {"error": {"type": "not_found", "message": "no such job"}}
    script = Script(httpx.Response(404, json=body))
    with pytest.raises(NotFoundError, match="no such job"):
        sync_client(script).jobs.get("j1")
    assert len(script.requests) == 1 and sleeps == []


def test_non_json_error_body_falls_back_to_text(sleeps: list[float]) -> None:
    script = Script(httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(InternalServerError) as info:
        sync_client(script, max_retries=0).jobs.get("j1")
    assert info.value.message == "<html>Bad gateway</html>"
    assert info.value.response == "<html>Bad gateway</html>"
    assert info.value.error_type is None


def test_read_error_retried_only_when_idempotent(sleeps: list[float]) -> None:
    calls: list[str] = []

    def broken(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        raise httpx.ReadError("connection reset", request=request)

    client = sync_client(broken)
    with pytest.raises(APIConnectionError):
        client.jobs.update("j1", status="running")
    assert calls == ["PATCH"] * 3
    calls.clear()
    with pytest.raises(APIConnectionError):
        client.create_session()
    assert calls == ["POST"]


def test_wire_format() -> None:
    script = Script(httpx.Response(200, json=PAGE), httpx.Response(200, json=JOB))
    client = sync_client(script)
    client.training_predictions.get("a/b:c d", validation_pass=False, epoch=0, prompt_id=None)
    client.jobs.update("j1", name="n")
    get, patch = script.requests
    assert get.url.raw_path.startswith(b"/api/training/predictions/a%2Fb%3Ac%20d?")
    assert dict(get.url.params) == {
        "epoch": "0",
        "validation_pass": "false",
        "limit": "50",
        "offset": "0",
    }
    assert get.headers["authorization"] == "Bearer flk_test"
    assert get.headers["user-agent"] == f"finetune-lab-python/{__version__}"
    assert patch.method == "PATCH"
    assert patch.headers["content-type"] == "application/json"
    assert orjson.loads(patch.content) == {"name": "n"}  # unset fields are not sent


def test_iter_follows_cursor_until_none(sleeps: list[float]) -> None:
    def row(i: int) -> dict[str, Any]:
        return {
            "id": i,
            "job_id": "j1",
            "epoch": 0,
            "step": 0,
            "sample_index": i,
            "prompt": "p",
            "prediction": "x",
            "created_at": NOW,
        }

    pages = [
        dict(PAGE, predictions=[row(0), row(1)], next_cursor="c1"),
        dict(PAGE, predictions=[row(2)], next_cursor=None),
    ]
    script = Script(*(httpx.Response(200, json=p) for p in pages))
    got = [p.sample_index for p in sync_client(script).training_predictions.iter("j1", page_size=2)]
    assert got == [0, 1, 2]
    assert "cursor" not in script.requests[0].url.params
    assert script.requests[1].url.params["cursor"] == "c1"


@pytest.mark.anyio
async def test_async_retries_and_retry_after(async_sleeps: list[float]) -> None:
    script = Script(error(429, {"Retry-After": "4"}), error(503), httpx.Response(200, json=JOB))
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    async with AsyncFinetuneLabClient(api_key="k", base_url="http://fake", http_client=http) as c:
        assert (await c.jobs.get("j1")).id == "j1"
    assert len(script.requests) == 3
    assert async_sleeps[0] == 4.0 and 0.75 <= async_sleeps[1] <= 1.0
    await http.aclose()


@pytest.mark.anyio
async def test_async_non_idempotent_post_not_retried_on_5xx(async_sleeps: list[float]) -> None:
    script = Script(error(500), httpx.Response(201, json=JOB))
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    client = AsyncFinetuneLabClient(api_key="k", base_url="http://fake", http_client=http)
    with pytest.raises(InternalServerError):
        await client.create_session()
    assert len(script.requests) == 1 and async_sleeps == []
    await http.aclose()
