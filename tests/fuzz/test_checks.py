"""The fuzzer's own checks must be able to fail: each bad response below is refused."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import requests
from schemathesis.core.transport import Response

from ._harness import error_body_shape, no_server_error

CTX: Any = None  # neither check reads the schemathesis context
PREDICT_LIKE: Any = SimpleNamespace(
    operation=SimpleNamespace(definition=SimpleNamespace(raw={"responses": {"200": {}, "502": {}}}))
)


def response(status: int, body: bytes, content_type: str = "application/json") -> Response:
    request = requests.Request("GET", "http://127.0.0.1/x").prepare()
    return Response(
        status_code=status,
        headers={"content-type": [content_type]},
        content=body,
        request=request,
        elapsed=0.01,
        verify=True,
    )


GOOD = b'{"error": {"type": "not_found", "message": "job not found"}}'


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (404, b'{"detail": "Not Found"}', "application/json"),  # FastAPI's default shape
        (422, b'{"error": "bad"}', "application/json"),
        (400, b'{"error": {"type": "bad_request"}}', "application/json"),
        (400, b'{"error": {"type": "bad_request", "message": " "}}', "application/json"),
        (409, b'{"error": {"type": "c", "message": "m", "extra": 1}}', "application/json"),
        (413, GOOD, "text/plain"),
        (500, b"Internal Server Error", "text/plain"),
    ],
)
def test_error_body_shape_refuses(status: int, body: bytes, content_type: str) -> None:
    with pytest.raises((AssertionError, ValueError)):
        error_body_shape(CTX, response(status, body, content_type), PREDICT_LIKE)


def test_error_body_shape_accepts_the_documented_body() -> None:
    detailed = b'{"error": {"type": "validation_error", "message": "m", "details": []}}'
    for body in (GOOD, detailed):
        assert error_body_shape(CTX, response(404, body), PREDICT_LIKE) is None


@pytest.mark.parametrize("status", [500, 501, 503])
def test_no_server_error_refuses_500_and_undocumented_5xx(status: int) -> None:
    with pytest.raises(AssertionError):
        no_server_error(CTX, response(status, GOOD), PREDICT_LIKE)


def test_no_server_error_accepts_a_documented_upstream_failure() -> None:
    assert no_server_error(CTX, response(502, GOOD), PREDICT_LIKE) is None
