"""SDK test fixtures: clients bound to the live test server, and a seeded job."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from _support.appserver import ServerHandle
from finetune_lab import AsyncFinetuneLabClient, FinetuneLabClient
from finetune_lab.client import _transport

from ._data import rows


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client(server: ServerHandle, api_key: str) -> Iterator[FinetuneLabClient]:
    with FinetuneLabClient(api_key=api_key, base_url=server.base_url, timeout=30) as c:
        yield c


@pytest.fixture
async def async_client(server: ServerHandle, api_key: str) -> AsyncIterator[AsyncFinetuneLabClient]:
    async with AsyncFinetuneLabClient(api_key=api_key, base_url=server.base_url, timeout=30) as c:
        yield c


@pytest.fixture
def seeded_job(client: FinetuneLabClient, unique_job_id: str) -> str:
    """A job holding the `_data` history, ingested through the SDK."""
    client.jobs.create(id=unique_job_id, name="seeded", model_name="tiny")
    result = client.training_predictions.create(unique_job_id, rows())
    assert (result.accepted, result.created, result.updated) == (16, 16, 0)
    return unique_job_id


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Records the SDK's retry pauses instead of sleeping them."""
    slept: list[float] = []
    monkeypatch.setattr(_transport, "_sleep", slept.append)
    return slept
