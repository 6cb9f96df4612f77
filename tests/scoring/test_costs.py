"""Bounded costs: CER past a fixed length product, schema regexes on RE2 with jsonschema's own
semantics and messages for ordinary patterns."""

from __future__ import annotations

import json
import time

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from finetune_lab.scoring import Validators, score
from finetune_lab.scoring.metrics import CER_MAX_CELLS
from finetune_lab.scoring.regex import translate
from finetune_lab.scoring.validators import check_validators_config


def test_cer_is_null_past_the_length_product_bound() -> None:
    truth = "ab" * 20_000  # 40,000 x 40,000 = 1.6e9 cells > CER_MAX_CELLS
    prediction = "ba" * 20_000
    assert len(truth) * len(prediction) > CER_MAX_CELLS
    started = time.perf_counter()
    scores = score(prediction, truth)
    assert time.perf_counter() - started < 1
    assert scores.char_error_rate is None
    assert scores.exact_match == 0.0
    assert scores.length_ratio == 1.0
    assert scores.word_overlap == 0.0


def test_cer_is_computed_up_to_the_bound() -> None:
    truth = "ab" * 15_000  # 30,000^2 = 9e8 cells: computed
    prediction = "b" + truth[1:]
    assert score(prediction, truth).char_error_rate == pytest.approx(1 / 30_000)


def test_a_length_difference_of_at_least_the_truth_settles_cer_at_one() -> None:
    truth = "x" * 40_000
    prediction = "y" * 900_000  # 3.6e10 cells, but the distance is >= 860,000 > len(truth)
    started = time.perf_counter()
    assert score(prediction, truth).char_error_rate == 1.0
    assert time.perf_counter() - started < 1


def test_a_distance_past_the_truth_length_is_capped_at_one() -> None:
    # distance("bbbbbbb", "aaaa") = 7 > 4: the library stops at its cutoff, CER is still 1.0
    assert score("bbbbbbb", "aaaa").char_error_rate == 1.0
    # distance("aaab", "aaaa") = 1
    assert score("aaab", "aaaa").char_error_rate == 0.25


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("\\u0041", "\\x{0041}"),
        ("[\\u00e0-\\u00ff]+", "[\\x{00e0}-\\x{00ff}]+"),
        ("\\\\u0041", "\\\\u0041"),  # an escaped backslash, then the letters u0041
        ("\\\\\\u0041", "\\\\\\x{0041}"),
        ("\\u004", "\\u004"),  # not an escape: RE2 refuses it, as ECMA does with the u flag
    ],
)
def test_ecma_unicode_escapes_are_translated(pattern: str, expected: str) -> None:
    assert translate(pattern) == expected


def reference_error(schema: dict, text: str) -> list[dict]:
    """What the validator reported before RE2: plain jsonschema on Python's re."""
    errors = list(Draft202012Validator(schema).iter_errors(json.loads(text)))
    if not errors:
        return []
    first = best_match(errors)
    detail = {
        "path": "/" + "/".join(str(p) for p in first.absolute_path),
        "schema_path": "/" + "/".join(str(p) for p in first.absolute_schema_path),
        "error_count": len(errors),
    }
    return [{"validator": "json_schema", "message": first.message, "detail": detail}]


SCHEMAS = {
    "pattern": {"type": "string", "pattern": "^[a-z]+-[0-9]{2,4}$"},
    "pattern-properties": {
        "type": "object",
        "patternProperties": {"^s_": {"type": "string"}, "^n_": {"type": "number"}},
        "additionalProperties": False,
    },
    "additional-false": {"type": "object", "properties": {"a": {}}, "additionalProperties": False},
    "additional-schema": {
        "type": "object",
        "properties": {"a": {}},
        "patternProperties": {"^x": {}},
        "additionalProperties": {"type": "integer"},
    },
    "property-names": {"type": "object", "propertyNames": {"pattern": "^[A-Z]"}},
}
TEXTS = [
    '"abc-123"',
    '"abc-1"',
    '"ABC-123"',
    '{"s_a": "x", "n_b": 2}',
    '{"s_a": 1, "n_b": "y", "zz": 3, "yy": 4}',
    '{"a": 1, "b": 2}',
    '{"a": 1, "b": 2, "c": 3}',
    '{"x1": "q", "b": "2"}',
    '{"Abc": 1, "abc": 2}',
]


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_re2_keywords_report_what_jsonschema_reported(name: str) -> None:
    schema = SCHEMAS[name]
    validators = Validators(json_schema=schema)
    for text in TEXTS:
        result = validators(text)
        assert result.errors == reference_error(schema, text), (name, text)
        assert result.passed is (not result.errors)


def test_a_checked_schema_is_only_compiled() -> None:
    schema = {"type": "string", "pattern": "^a+$"}
    checked = Validators(json_schema=schema, checked=True)
    assert checked('"aaa"').passed and not checked('"b"').passed
    # Refused when checked, as at job creation:
    refused = {"predictions": {"validators": {"json_schema": {"pattern": "(?=a)"}}}}
    assert "RE2" in (check_validators_config(refused) or "")
