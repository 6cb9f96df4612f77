"""How a bad ingest batch is answered: which status, and a message and `details` that name
the first bad item, without storing anything (parse_batch runs before any write)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from finetune_lab.schema import MAX_BATCH_ITEMS
from finetune_lab.server.errors import APIError, describe_validation_errors
from finetune_lab.server.services.ingest import parse_batch


def item(**overrides: Any) -> dict[str, Any]:
    return {"epoch": 0, "step": 0, "sample_index": 0, "prompt": "p", "prediction": "a", **overrides}


def refused(body: bytes) -> APIError:
    with pytest.raises(APIError) as info:
        parse_batch(body)
    return info.value


def test_a_good_batch_parses() -> None:
    items = parse_batch(orjson.dumps({"predictions": [item(), item(sample_index=1)]}))
    assert [i.sample_index for i in items] == [0, 1]


def test_malformed_json_is_400() -> None:
    error = refused(b'{"predictions": [')
    assert error.status_code == 400
    assert error.type == "bad_request"
    assert error.message.startswith("request body is not valid JSON")


def test_too_many_items_is_413() -> None:
    error = refused(
        orjson.dumps({"predictions": [item(sample_index=i) for i in range(MAX_BATCH_ITEMS + 1)]})
    )
    assert error.status_code == 413
    assert str(MAX_BATCH_ITEMS) in error.message


def test_a_bad_item_is_named_by_index_and_field() -> None:
    error = refused(orjson.dumps({"predictions": [item(), item(epoch=-1)]}))
    assert error.status_code == 422
    assert error.message.startswith("predictions[1] epoch: ")
    assert [d["loc"] for d in error.details] == [["predictions", 1, "epoch"]]
    assert set(error.details[0]) == {"loc", "message", "type"}


def test_several_errors_are_counted_in_the_message() -> None:
    error = refused(orjson.dumps({"predictions": [item(epoch=-1), item(step="x", prompt=3)]}))
    assert error.message.startswith("predictions[0] epoch: ")
    assert error.message.endswith(f"(and {len(error.details) - 1} more errors)")
    assert len(error.details) == 3


def test_client_sent_scores_and_unknown_fields_are_refused() -> None:
    error = refused(orjson.dumps({"predictions": [item(exact_match=1.0)]}))
    assert error.status_code == 422
    assert error.details[0]["loc"] == ["predictions", 0, "exact_match"]


def test_a_body_that_is_not_an_object_says_what_it_should_be() -> None:
    error = refused(b"[1, 2]")
    assert error.status_code == 422
    assert error.message.startswith('body must be an object {"predictions": [...]}')


def test_nul_in_a_text_is_refused_naming_item_and_field() -> None:
    error = refused(orjson.dumps({"predictions": [item(), item(prediction="a\x00b")]}))
    assert error.status_code == 422
    assert error.message == (
        "predictions[1] prediction: text must not contain the NUL character (U+0000)"
    )
    assert error.details[0]["loc"] == ["predictions", 1, "prediction"]


def test_nul_in_a_metric_name_names_the_metrics_key() -> None:
    error = refused(orjson.dumps({"predictions": [item(metrics={"a\x00": 1.0})]}))
    assert error.message.startswith("predictions[0] metrics key: ")
    assert error.details[0]["loc"] == ["predictions", 0, "metrics", "a\x00"]


def test_describe_validation_errors_drops_the_location_kind() -> None:
    message, details = describe_validation_errors(
        [
            {"loc": ("query", "limit"), "msg": "too big", "type": "less_than_equal"},
            {"loc": ("body", "name"), "msg": "missing", "type": "missing"},
        ]
    )
    assert message == "limit: too big (and 1 more)"
    assert details[1] == {"loc": ["body", "name"], "message": "missing", "type": "missing"}
    assert describe_validation_errors([]) == ("invalid request", [])
