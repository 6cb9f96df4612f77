"""Error mapping from real server answers, and real connection failures."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from _support.appserver import ServerHandle
from _support.net import free_port
from finetune_lab import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    FinetuneLabClient,
    FinetuneLabError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)


def _assert_error_body(err: APIStatusError, status: int, error_type: str) -> None:
    assert err.status_code == status
    assert err.error_type == error_type
    assert isinstance(err.response, dict)
    assert err.response["error"]["type"] == error_type
    assert err.message == err.response["error"]["message"]
    assert err.message
    assert str(err).startswith(f"{status} {error_type}: ")


@pytest.fixture(scope="session")
def bob_key(server: ServerHandle) -> str:
    return server.create_key("bob", scopes="training")


def test_401_bad_key(server: ServerHandle) -> None:
    bad = FinetuneLabClient(api_key="flk_" + "x" * 43, base_url=server.base_url)
    with bad, pytest.raises(AuthenticationError) as info:
        bad.jobs.list()
    _assert_error_body(info.value, 401, "unauthorized")


def test_403_key_without_training_scope(server: ServerHandle) -> None:
    key = server.create_key("carol", scopes="production")
    with FinetuneLabClient(api_key=key, base_url=server.base_url) as prod:
        assert prod.whoami().scopes == ["production"]
        with pytest.raises(PermissionDeniedError) as info:
            prod.training_predictions.get("anything")
        _assert_error_body(info.value, 403, "forbidden")
        with pytest.raises(PermissionDeniedError):
            prod.jobs.create(name="nope")


def test_404_unknown_job(client: FinetuneLabClient, unique_job_id: str) -> None:
    with pytest.raises(NotFoundError) as info:
        client.jobs.get(unique_job_id)
    _assert_error_body(info.value, 404, "not_found")
    for call in (
        lambda: client.training_predictions.get(unique_job_id),
        lambda: client.training_predictions.epochs(unique_job_id),
        lambda: client.training_predictions.trends(unique_job_id),
        lambda: client.training_predictions.create(unique_job_id, []),
        lambda: client.training_predictions.export(unique_job_id),
        lambda: client.jobs.delete(unique_job_id),
    ):
        with pytest.raises(NotFoundError):
            call()


def test_404_missing_sample_and_epoch(client: FinetuneLabClient, seeded_job: str) -> None:
    with pytest.raises(NotFoundError):
        client.training_predictions.sample(seeded_job, 99)
    with pytest.raises(NotFoundError):
        client.training_predictions.compare(seeded_job, from_epoch=0, to_epoch=7)


def test_404_for_another_users_job(
    client: FinetuneLabClient, server: ServerHandle, bob_key: str, unique_job_id: str
) -> None:
    client.jobs.create(id=unique_job_id)
    with FinetuneLabClient(api_key=bob_key, base_url=server.base_url) as bob:
        with pytest.raises(NotFoundError):
            bob.training_predictions.get(unique_job_id)
        with pytest.raises(NotFoundError):
            bob.jobs.get(unique_job_id)


def test_409_another_users_job_id(
    client: FinetuneLabClient, server: ServerHandle, bob_key: str, unique_job_id: str
) -> None:
    with FinetuneLabClient(api_key=bob_key, base_url=server.base_url) as bob:
        bob.jobs.create(id=unique_job_id)
    with pytest.raises(ConflictError) as info:
        client.jobs.create(id=unique_job_id)
    _assert_error_body(info.value, 409, "conflict")


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": 1001}, {"epoch": -1}, {"offset": -5}, {"cursor": "not-a-cursor"}],
    ids=["limit0", "limit1001", "epoch-1", "offset-5", "cursor"],
)
def test_422_bad_query_params(
    client: FinetuneLabClient, seeded_job: str, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValidationError) as info:
        client.training_predictions.get(seeded_job, **kwargs)  # type: ignore[arg-type]
    _assert_error_body(info.value, 422, "validation_error")


def test_422_bad_values(client: FinetuneLabClient, seeded_job: str) -> None:
    with pytest.raises(ValidationError):
        client.jobs.update(seeded_job, status="exploded")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        client.jobs.list(limit=0)
    with pytest.raises(ValidationError):
        client.training_predictions.trends(seeded_job, group_by="hour")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        client.training_predictions.export(seeded_job, format="xlsx")  # type: ignore[call-overload]
    with pytest.raises(ValidationError) as info:
        client.training_predictions.create(seeded_job, [{"epoch": 0, "step": 0}])
    assert info.value.response["error"]["details"][0]["loc"][:2] == ["predictions", 0]


def test_error_attributes_match_the_typescript_sdk(
    client: FinetuneLabClient, seeded_job: str
) -> None:
    """`status`, `body` and `details`: the names sdk/node's errors use, on the same values."""
    with pytest.raises(ValidationError) as info:
        client.training_predictions.create(seeded_job, [{"epoch": 0, "step": 0}])
    err = info.value
    assert err.status == err.status_code == 422
    assert err.body is err.response and err.body["error"]["type"] == "validation_error"
    assert err.details == err.body["error"]["details"]
    assert err.details[0]["loc"][:2] == ["predictions", 0]
    with pytest.raises(NotFoundError) as missing:
        client.jobs.get(f"{seeded_job}-missing")
    assert missing.value.status == 404 and missing.value.details is None
    assert FinetuneLabError("no server").body is None


# --- connection failures --------------------------------------------------------------------


class CountingTransport(httpx.BaseTransport):
    """A real HTTP transport that counts attempts."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.attempts: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts.append(request.method)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections (kernel backlog) but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_closed_port_raises_connection_error_without_retries(sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    dead = FinetuneLabClient(api_key="flk_x", base_url=url, max_retries=0)
    with dead, pytest.raises(APIConnectionError) as info:
        dead.jobs.list()
    assert not isinstance(info.value, APITimeoutError)
    assert info.value.status_code is None
    assert url in str(info.value)
    assert sleeps == []


def test_connection_errors_are_retried_even_for_posts(sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    transport = CountingTransport()
    with httpx.Client(transport=transport) as http:
        dead = FinetuneLabClient(api_key="flk_x", base_url=url, max_retries=2, http_client=http)
        with pytest.raises(APIConnectionError):
            dead.jobs.get("j")
        assert transport.attempts == ["GET"] * 3
        # Never sent, so even a non-idempotent create may be retried.
        transport.attempts.clear()
        with pytest.raises(APIConnectionError):
            dead.jobs.create(name="x")
        assert transport.attempts == ["POST"] * 3
    assert len(sleeps) == 4
    assert 0.375 <= sleeps[0] <= 0.5 and 0.75 <= sleeps[1] <= 1.0


def test_timeout_maps_to_api_timeout_error(silent_server: str, sleeps: list[float]) -> None:
    transport = CountingTransport()
    with httpx.Client(transport=transport) as http:
        slow = FinetuneLabClient(
            api_key="flk_x", base_url=silent_server, timeout=0.2, max_retries=1, http_client=http
        )
        with pytest.raises(APITimeoutError) as info:
            slow.jobs.get("j")
        assert isinstance(info.value, APIConnectionError)  # a timeout is a connection problem
        assert transport.attempts == ["GET", "GET"]  # idempotent: retried
        transport.attempts.clear()
        with pytest.raises(APITimeoutError):
            slow.jobs.create(name="x")  # may have reached the server: not retried
        assert transport.attempts == ["POST"]


def test_missing_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINETUNE_LAB_API_KEY", raising=False)
    with pytest.raises(FinetuneLabError, match="FINETUNE_LAB_API_KEY"):
        FinetuneLabClient()


def test_env_configuration(
    monkeypatch: pytest.MonkeyPatch, server: ServerHandle, api_key: str
) -> None:
    monkeypatch.setenv("FINETUNE_LAB_API_KEY", api_key)
    monkeypatch.setenv("FINETUNE_LAB_API_URL", server.base_url + "/")
    with FinetuneLabClient() as from_env:
        assert from_env.base_url == server.base_url
        assert from_env.whoami().user == "alice"
    monkeypatch.delenv("FINETUNE_LAB_API_URL")
    assert FinetuneLabClient().base_url == "http://127.0.0.1:8484"
    assert api_key not in repr(FinetuneLabClient())
