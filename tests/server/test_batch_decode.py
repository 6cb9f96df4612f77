"""The msgspec fast path of ingest decoding means exactly what pydantic's `PredictionsBatch`
means: for every body, the same items (values and types) or the same validation errors.

Edge cases of every field (bounds, types pydantic coerces, non-finite floats, lone surrogates,
duplicate keys, sizes counted in characters), then Hypothesis over items mixing valid and
invalid values per field. Over HTTP, coerced and refused bodies answer as they always did.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_lab.schema import MAX_INT, PredictionIn, PredictionsBatch
from finetune_lab.server.services import batch_decode

from ._helpers import create_job

BASE = '{"epoch":0,"step":1,"sample_index":2,"prompt":"p","prediction":"x"%s}'
METRICS_64 = ",".join(f'"m{i}":1' for i in range(64))
EMOJI = "\\ud83d\\ude00"  # one character, two UTF-16 escapes
EDGE_CASES = [
    "",
    ',"latency_ms":3',
    ',"latency_ms":1.5',
    ',"latency_ms":-0.0',
    ',"latency_ms":-1e-400',
    ',"latency_ms":1e999',
    ',"latency_ms":1E400',
    ',"latency_ms":NaN',
    ',"latency_ms":Infinity',
    ',"latency_ms":-1',
    ',"latency_ms":12345678901234567890123',
    ',"latency_ms":"2.5"',
    ',"metrics":{"a":1e999}',
    ',"metrics":{"a":1,"a":2}',
    ',"metrics":{"":1}',
    ',"metrics":{"a":true}',
    ',"metrics":{"a":"1"}',
    f',"metrics":{{"{"k" * 128}":1}}',
    f',"metrics":{{"{"k" * 129}":1}}',
    f',"metrics":{{{METRICS_64}}}',
    f',"metrics":{{{METRICS_64},"m64":1}}',
    f',"metrics":{{{METRICS_64},"m0":2}}',
    ',"metrics":null',
    ',"metrics":{}',
    ',"do_sample":true',
    ',"do_sample":1',
    ',"do_sample":"true"',
    ',"prompt_id":"\\ud800"',
    ',"ground_truth":"\\ud83d\\ude00"',
    f',"prompt_id":"{"é" * 256}"',
    f',"prompt_id":"{"é" * 257}"',
    f',"prompt_id":"{EMOJI * 256}"',
    f',"prompt_id":"{EMOJI * 257}"',
    f',"sample_source":"{"s" * 1025}"',
    ',"prompt":"a\\u0000b"',
    ',"prompt":5',
    ',"prompt":null',
    ',"ground_truth":null',
    ',"epoch":5',
    ',"epoch":3,"epoch":4',
    ',"source_index":9223372036854775807',
    ',"source_index":9223372036854775808',
    ',"source_index":-1',
    ',"source_index":1.0',
    ',"source_index":1.5',
    ',"source_index":"3"',
    ',"total_tokens":true',
    ',"unknown":1',
]
WHOLE_BODIES = [
    b'{"predictions":[]}',
    b'{"predictions":[],"predictions":[]}',
    b' {"predictions":[]} ',
    b'\xef\xbb\xbf{"predictions":[]}',
    b'{"predictions":[]}x',
    b"[]",
    b"{}",
    b'{"predictions":null}',
    b'{"predictions":[],"extra":1}',
    b'{"predictions":[' + b",".join([BASE.encode() % b""] * 5001) + b"]}",
    b"",
    b"\xff",
]


def _outcome(parse: Any, body: bytes) -> Any:
    """What a parser makes of a body: items as (field, type, value) tuples, or its errors."""
    try:
        items = parse(body)
    except pydantic.ValidationError as exc:
        return ("error", repr(exc.errors(include_url=False)))  # repr: NaN equals itself
    return [
        tuple((name, type(value).__name__, repr(value)) for name, value in _fields(item))
        for item in items
    ]


def _fields(item: Any) -> list[tuple[str, Any]]:
    return [(name, getattr(item, name)) for name in batch_decode.FIELDS]


def _pydantic(body: bytes) -> Any:
    return PredictionsBatch.model_validate_json(body).predictions


def assert_same_meaning(body: bytes) -> None:
    assert _outcome(batch_decode.decode, body) == _outcome(_pydantic, body)


def test_the_fast_items_have_the_contract_fields_in_order() -> None:
    assert tuple(PredictionIn.model_fields) == batch_decode.FIELDS


@pytest.mark.parametrize("extra", EDGE_CASES)
def test_edge_cases_mean_the_same(extra: str) -> None:
    assert_same_meaning(("{" + f'"predictions":[{BASE % extra}]' + "}").encode())


@pytest.mark.parametrize("body", WHOLE_BODIES, ids=lambda body: repr(body[:30]))
def test_whole_bodies_mean_the_same(body: bytes) -> None:
    assert_same_meaning(body)


def test_common_bodies_take_the_fast_path() -> None:
    body = orjson.dumps({"predictions": [{**_valid(), "latency_ms": 2, "metrics": {"a": 1}}]})
    decoded = batch_decode._decoder.decode(body).predictions
    assert batch_decode.decode(body) == decoded
    assert isinstance(decoded[0].latency_ms, float)


def _valid() -> dict[str, Any]:
    return {"epoch": 0, "step": 1, "sample_index": 2, "prompt": "p", "prediction": "x"}


ANY_JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, MAX_INT, MAX_INT + 1, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["3", "1.5", "true", "yes", ""]),
)
FIELD_VALUES = {
    "epoch": st.integers(min_value=0, max_value=MAX_INT),
    "step": st.integers(min_value=0, max_value=MAX_INT),
    "sample_index": st.integers(min_value=0, max_value=MAX_INT),
    "prompt": st.text(max_size=20),
    "prediction": st.text(max_size=20),
    "ground_truth": st.one_of(st.none(), st.text(max_size=20)),
    "prompt_id": st.one_of(st.none(), st.text(min_size=250, max_size=260)),
    "latency_ms": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    "do_sample": st.one_of(st.none(), st.booleans()),
    "metrics": st.one_of(
        st.none(),
        st.dictionaries(st.text(max_size=130), st.one_of(st.floats(), ANY_JSON), max_size=66),
    ),
}


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    item = {}
    for name, good in FIELD_VALUES.items():
        if draw(st.booleans()) or name in ("epoch", "step", "sample_index"):
            item[name] = draw(st.one_of(good, ANY_JSON) if draw(st.booleans()) else good)
    if draw(st.integers(0, 9)) == 0:
        item["unknown"] = 1
    return item


@given(st.lists(items(), max_size=4))
@settings(max_examples=300, deadline=None)
def test_random_items_mean_the_same(batch: list[dict[str, Any]]) -> None:
    # The standard library writes big integers, NaN and lone surrogates (as escapes) too.
    body = json.dumps({"predictions": batch}).encode()
    assert_same_meaning(body)


def test_over_http_coerced_and_refused_bodies_answer_as_before(server, http) -> None:  # type: ignore[no-untyped-def]
    """pydantic's coercions still apply (the fast path hands them over), and refusals keep
    their status and message."""
    job_id = create_job(http)["id"]
    url = f"/api/training/predictions/{job_id}"
    lax = {**_valid(), "epoch": "3", "do_sample": 1, "latency_ms": 4, "metrics": {"m": True}}
    assert http.post(url, json={"predictions": [lax]}).status_code == 200
    stored = http.get(url).json()["predictions"][0]
    assert (stored["epoch"], stored["do_sample"], stored["latency_ms"]) == (3, True, 4.0)
    assert stored["metrics"] == {"m": 1.0}
    body = b'{"predictions":[' + (BASE % ',"latency_ms":1e999').encode() + b"]}"
    refused = http.post(url, content=body, headers={"Content-Type": "application/json"})
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith("predictions[0] latency_ms:")
