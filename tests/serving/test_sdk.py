"""The Python SDK's serving surface against a live server: predict (whole and streamed),
models, test suites, batch tests, analytics; sync and async."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI
from finetune_lab import AsyncFinetuneLabClient, FinetuneLabClient
from finetune_lab.errors import (
    FinetuneLabError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from finetune_lab.schema_serving import ChatCompletion, ChatCompletionChunk

from ._tiny import FACTS
from .conftest import NewUser


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_sync_client_end_to_end(
    server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path, fake_openai: FakeOpenAI
) -> None:
    user = new_user()
    with FinetuneLabClient(api_key=user.key, base_url=server.base_url) as client:
        model = client.models.register("tiny", kind="local", path=str(tiny_checkpoint))
        assert [m.id for m in client.models.list().models] == [model.id]
        answer = client.predict("tiny", "capital of France?", temperature=0)
        assert isinstance(answer, ChatCompletion)
        assert answer.choices[0].message.content == "Paris"
        assert answer.choices[0].finish_reason == "stop" and answer.usage is not None
        assert answer.raw["usage"]["total_tokens"] == answer.usage.total_tokens
        chunks = list(
            client.predict(
                "tiny",
                [{"role": "user", "content": "capital of Japan?"}],
                temperature=0,
                stream=True,
            )
        )
        assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Tokyo"
        assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is not None
        with pytest.raises(NotFoundError):
            client.predict("nope", "hi")
        with pytest.raises(ValidationError):
            client.predict("tiny", [])
        broken = client.models.register(
            "broken", kind="openai", base_url=fake_openai.base_url, upstream_model="fail-503"
        )
        with pytest.raises(FinetuneLabError) as failure:
            list(client.predict(broken.name, "x", stream=True))
        assert failure.value.error_type == "upstream_error"

        suite = client.test_suites.create(
            "facts", [{"prompt": q, "expected": a} for q, a in FACTS.items()]
        )
        started = client.batch_test.run(model.id, suite.id, concurrency=2)
        assert started.total_prompts == len(FACTS)
        final = client.batch_test.wait(started.test_run_id, timeout=60, poll_interval=0.1)
        assert final.status == "completed" and final.summary.avg_exact_match == 1.0
        results = client.batch_test.results(started.test_run_id)
        assert [r.response for r in results.results] == list(FACTS.values())
        slow = client.models.register(
            "slow", kind="openai", base_url=fake_openai.base_url, upstream_model="slow-200"
        )
        many = client.test_suites.create("many", [{"prompt": f"p{i}"} for i in range(50)])
        run = client.batch_test.run(slow.name, many.id, concurrency=1)
        assert client.batch_test.cancel(run.test_run_id).status == "cancelled"
        assert client.batch_test.status(run.test_run_id).status == "cancelled"
        assert [r.test_run_id for r in client.batch_test.list().test_runs] == [
            run.test_run_id,
            started.test_run_id,
        ]

        traces = list(client.analytics.iter_traces(page_size=3))
        # 2 predicts + 1 unknown model + 1 invalid body + 1 failed stream + the batch prompts
        # (the cancelled run may have started one prompt).
        predicts = [t for t in traces if t.operation == "chat.completions"]
        assert len(predicts) == 5
        assert sum(t.status == "error" for t in predicts) == 3
        assert len([t for t in traces if t.test_run_id == started.test_run_id]) == len(FACTS)
        at = datetime(2031, 3, 4, 5, 6, tzinfo=timezone.utc)
        recorded = client.analytics.create_trace(
            "external-model",
            latency_ms=12.5,
            prompt_tokens=3,
            completion_tokens=4,
            created_at=at,
        )
        assert recorded.total_tokens == 7 and recorded.created_at == at
        data = client.analytics.data(
            start_date=at.date(), end_date=at + timedelta(hours=1), granularity="hour"
        )
        assert data.totals.request_count == 1 and data.totals.latency_p95_ms == 12.5
        assert [b.request_count for b in data.buckets] == [0, 0, 0, 0, 0, 1, 0]  # 00:00..06:00
        assert data.models[0].model == "external-model"
    with FinetuneLabClient(api_key=new_user("training").key, base_url=server.base_url) as other:
        with pytest.raises(PermissionDeniedError):
            other.predict("tiny", "hi")
        with pytest.raises(PermissionDeniedError):
            other.batch_test.status("run_x")


@pytest.mark.anyio
async def test_async_client(server: ServerHandle, new_user: NewUser, tiny_checkpoint: Path) -> None:
    user = new_user()
    async with AsyncFinetuneLabClient(api_key=user.key, base_url=server.base_url) as client:
        model = await client.models.register("tiny", kind="local", path=str(tiny_checkpoint))
        answer = await client.predict(model.name, "two plus two?", temperature=0)
        assert answer.choices[0].message.content == "four"
        stream = await client.predict(model.name, "color of the sky?", temperature=0, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert text == "blue"
        suite = await client.test_suites.create(
            "s", [{"prompt": "opposite of hot?", "expected": "cold"}]
        )
        run = await client.batch_test.run(model.id, suite.id)
        final = await client.batch_test.wait(run.test_run_id, timeout=60, poll_interval=0.1)
        assert final.status == "completed" and final.summary.avg_exact_match == 1.0
        assert (await client.batch_test.results(run.test_run_id)).results[0].response == "cold"
        traces = [t async for t in client.analytics.iter_traces(page_size=2)]
        assert len(traces) == 3
        data = await client.analytics.data(granularity="day")
        assert data.totals.request_count == 3 and data.totals.error_count == 0
        with pytest.raises(NotFoundError):
            await client.batch_test.cancel("run_missing")
