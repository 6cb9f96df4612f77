"""The OpenAI-compatible surface driven by the real `openai` client: `base_url=<server>/v1`
lists the caller's registered models and chats through them, whole and streamed."""

from __future__ import annotations

import time
import uuid

import openai
import pytest

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI
from server._helpers import assert_error

from .conftest import register_remote


def client_for(server: ServerHandle, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=key, max_retries=0)


def test_models_list_is_the_callers_models_in_openai_shape(
    server: ServerHandle, fake_openai: FakeOpenAI
) -> None:
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    key = server.create_key(owner)
    other_key = server.create_key(f"other-{uuid.uuid4().hex[:8]}")
    with server.client(key) as http, server.client(other_key) as other_http:
        before = int(time.time())
        first = register_remote(http, fake_openai.base_url, "echo")
        second = register_remote(http, fake_openai.base_url, "echo")
        register_remote(other_http, fake_openai.base_url, "echo")  # never listed for `owner`
        after = int(time.time())

        raw = http.get("/v1/models")
        assert raw.status_code == 200, raw.text
        assert raw.json()["object"] == "list"

    listed = client_for(server, key).models.list()
    assert [model.id for model in listed.data] == [first["name"], second["name"]]
    for model in listed.data:
        assert model.object == "model"
        assert model.owned_by == owner
        assert before - 1 <= model.created <= after + 1

    empty_key = server.create_key(f"empty-{uuid.uuid4().hex[:8]}")
    assert client_for(server, empty_key).models.list().data == []


def test_models_list_needs_a_production_key(server: ServerHandle) -> None:
    training_only = server.create_key(f"t-{uuid.uuid4().hex[:8]}", scopes="training")
    with server.client(training_only) as http:
        assert_error(http.get("/v1/models"), 403)
    with server.client(None) as anonymous:
        assert_error(anonymous.get("/v1/models"), 401)
    with pytest.raises(openai.PermissionDeniedError):
        client_for(server, training_only).models.list()


def test_chat_whole_and_streamed_through_the_openai_client(
    server: ServerHandle, fake_openai: FakeOpenAI
) -> None:
    key = server.create_key(f"chat-{uuid.uuid4().hex[:8]}")
    with server.client(key) as http:
        model = register_remote(http, fake_openai.base_url, "echo")
    client = client_for(server, key)
    name = client.models.list().data[0].id
    assert name == model["name"]

    whole = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "hello there"}]
    )
    assert whole.choices[0].message.content == "HELLO THERE"
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None and whole.usage.total_tokens == 10

    stream = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "streamed words here"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "STREAMED WORDS HERE"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
