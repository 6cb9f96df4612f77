"""Fixtures for serving tests: a tiny checkpoint trained here, a fake remote endpoint, and
fresh users (so analytics totals are exactly what one test did)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI

from ._tiny import train_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    return train_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.close()


@dataclass
class User:
    key: str
    http: httpx.Client


NewUser = Callable[..., User]


@pytest.fixture
def new_user(server: ServerHandle) -> Iterator[NewUser]:
    """`new_user(scopes="all")` → a brand-new user on `server` (its key and an httpx client)."""
    users: list[User] = []

    def make(scopes: str = "all") -> User:
        key = server.create_key(f"u-{uuid.uuid4().hex[:10]}", scopes=scopes)
        users.append(User(key, server.client(key)))
        return users[-1]

    yield make
    for user in users:
        user.http.close()


def register_local(http: httpx.Client, path: Path, name: str | None = None) -> dict:
    resp = http.post(
        "/api/models",
        json={"name": name or f"tiny-{uuid.uuid4().hex[:6]}", "kind": "local", "path": str(path)},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def register_remote(
    http: httpx.Client, base_url: str, upstream: str, api_key: str | None = None
) -> dict:
    body = {
        "name": f"remote-{uuid.uuid4().hex[:6]}",
        "kind": "openai",
        "base_url": base_url,
        "upstream_model": upstream,
    }
    if api_key:
        body["api_key"] = api_key
    resp = http.post("/api/models", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()
