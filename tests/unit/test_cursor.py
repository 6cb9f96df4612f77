"""Keyset cursors: opaque, URL-safe, round-trip exactly; anything else is a 422 naming `cursor`."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_lab.schema import MAX_INT
from finetune_lab.server.errors import APIError
from finetune_lab.server.services.queries import decode_cursor, encode_cursor

positions = st.integers(min_value=0, max_value=MAX_INT)


@settings(deadline=None)  # a loaded CI machine can pause any example
@given(positions, positions, positions)
def test_round_trip(epoch: int, step: int, sample_index: int) -> None:
    cursor = encode_cursor(epoch, step, sample_index)
    assert "=" not in cursor  # padding stripped: safe in a query string as is
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor) == (epoch, step, sample_index)


def _raw(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        "not base64 at all",
        _raw([1, 2]),  # too short
        _raw([1, 2, 3, 4]),
        _raw([1, 2, "3"]),
        _raw([1, 2, 3.0]),
        _raw([True, 2, 3]),  # a bool is an int to Python, not to the cursor
        _raw({"epoch": 1}),
        base64.urlsafe_b64encode(b"[1, 2,").decode(),
    ],
)
def test_invalid_cursor_is_a_422_naming_the_parameter(cursor: str) -> None:
    with pytest.raises(APIError) as info:
        decode_cursor(cursor)
    assert info.value.status_code == 422
    assert "cursor" in info.value.message
    assert info.value.details == [
        {"loc": ["query", "cursor"], "message": "invalid cursor", "type": "value_error"}
    ]
