"""A private server per backend for fuzzing (rate limit off, its own database), so the
fuzzer's jobs, models and traces never meet the other tests' data, and its seeded rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from _support.appserver import Backend, ServerHandle
from _support.fake_openai import FakeOpenAI
from _support.infra import Infra

from ._harness import Seeds, seed_rows

FUZZ_ENV = {"FINETUNE_LAB_RATE_LIMIT": "off", "FINETUNE_LAB_STREAM_HEARTBEAT_S": "1"}


@dataclass
class FuzzTarget:
    server: ServerHandle
    key: str
    seeds: Seeds

    @property
    def backend(self) -> Backend:
        return self.server.backend

    def client(self) -> httpx.Client:
        return self.server.client(self.key)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_target(
    request: pytest.FixtureRequest, _infra: Infra, upstream: FakeOpenAI
) -> Iterator[FuzzTarget]:
    backend: Backend = request.param
    if backend == "postgresql":
        request.getfixturevalue("postgres")  # skip locally / fail in CI without PostgreSQL
    server = _infra.new_server(backend, extra_env=FUZZ_ENV)
    try:
        key = server.create_key("fuzzer", scopes="all")
        with server.client(key) as http:
            seeds = seed_rows(http, upstream.base_url, "fuzz-job")
        yield FuzzTarget(server, key, seeds)
    finally:
        _infra.stop_server(server)
