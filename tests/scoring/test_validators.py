"""Output validators (docs/OVERVIEW.md, "Scores"; `config.predictions.validators`)."""

from __future__ import annotations

import json

import pytest
from jsonschema import SchemaError

from finetune_lab.scoring import ValidationResult, Validators, validate
from finetune_lab.scoring.validators import check_validators_config

PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


def assert_error_item(item, validator):
    assert set(item) == {"validator", "message", "detail"}
    assert item["validator"] == validator
    assert isinstance(item["message"], str)
    assert item["message"]
    assert item["detail"] is not None
    json.dumps(item)  # stored as JSON: must serialise


# --- kind ----------------------------------------------------------------------------------


def test_kind_strings():
    assert Validators(json_parse=True).kind == "json_parse"
    assert Validators(json_schema=PERSON_SCHEMA).kind == "json_parse+json_schema"
    assert Validators(json_parse=True, json_schema=PERSON_SCHEMA).kind == "json_parse+json_schema"


def test_json_schema_implies_json_parse():
    v = Validators(json_parse=False, json_schema={"type": "object"})
    assert v.json_parse is True
    result = v("not json")
    assert result.passed is False
    assert [e["validator"] for e in result.errors] == ["json_parse"]


def test_empty_schema_still_counts_as_a_schema():
    v = Validators(json_schema={})
    assert v.kind == "json_parse+json_schema"
    assert v("[1, 2]").passed is True
    assert v("[1, 2").passed is False


# --- json_parse ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction",
    [
        '{"a": 1}',
        "[1, 2, 3]",
        "42",
        "-1.5e3",
        '"a string"',
        "true",
        "false",
        "null",
        '  {"padded": true} \n',
        '{"unicode": "猫 👍"}',
    ],
)
def test_json_parse_passes(prediction):
    result = Validators(json_parse=True)(prediction)
    assert isinstance(result, ValidationResult)
    assert result.passed is True
    assert result.kind == "json_parse"
    assert result.errors == []


@pytest.mark.parametrize(
    "prediction",
    [
        "",
        "   ",
        "not json",
        "{'single': 'quotes'}",
        '{"a": 1,}',
        '{"a": 1',
        "NaN",
        "Infinity",
        "[1, 2] trailing",
        "None",
        "True",
        '{"a": 1}{"b": 2}',
    ],
)
def test_json_parse_fails_with_one_error(prediction):
    result = Validators(json_parse=True)(prediction)
    assert result.passed is False
    assert result.kind == "json_parse"
    assert len(result.errors) == 1
    assert_error_item(result.errors[0], "json_parse")


# --- json_schema -----------------------------------------------------------------------------


def test_json_schema_pass():
    result = Validators(json_schema=PERSON_SCHEMA)('{"name": "Ada", "age": 36}')
    assert result == ValidationResult(True, "json_parse+json_schema", [])


def test_json_schema_fail_with_detail():
    result = Validators(json_schema=PERSON_SCHEMA)('{"name": "Ada", "age": -1}')
    assert result.passed is False
    assert result.kind == "json_parse+json_schema"
    assert len(result.errors) == 1
    error = result.errors[0]
    assert_error_item(error, "json_schema")
    # the detail / message must let a person find the problem: the failing field
    assert "age" in json.dumps(error["detail"]) or "-1" in error["message"]


def test_json_schema_several_violations_reported_once():
    # wrong type for "name" AND missing "age": one json_schema failure, not two entries
    result = Validators(json_schema=PERSON_SCHEMA)('{"name": 5}')
    assert result.passed is False
    assert len(result.errors) == 1
    assert_error_item(result.errors[0], "json_schema")


def test_invalid_json_with_schema_reports_only_the_parse_failure():
    result = Validators(json_schema=PERSON_SCHEMA)('{"name": ')
    assert result.passed is False
    assert result.kind == "json_parse+json_schema"
    assert len(result.errors) == 1
    assert_error_item(result.errors[0], "json_parse")


def test_json_null_passes_json_parse():
    assert Validators(json_parse=True)("null") == ValidationResult(True, "json_parse", [])


def test_json_null_is_checked_against_the_schema():
    # `null` is a real JSON value: it must be validated, not treated as "no output"
    failed = Validators(json_schema={"type": "object"})("null")
    assert failed.passed is False
    assert len(failed.errors) == 1
    assert_error_item(failed.errors[0], "json_schema")

    assert Validators(json_schema={"type": "null"})("null").passed is True
    assert Validators(json_schema={"type": ["object", "null"]})("null").passed is True
    assert Validators(json_schema=PERSON_SCHEMA)(" null ").passed is False


def test_false_and_zero_are_values_too():
    schema = {"type": "object"}
    for falsy in ("false", "0", '""', "[]"):
        result = Validators(json_schema=schema)(falsy)
        assert result.passed is False, falsy
        assert [e["validator"] for e in result.errors] == ["json_schema"]
    assert Validators(json_schema={"type": "boolean"})("false").passed is True
    assert Validators(json_schema={"const": 0})("0").passed is True


def test_array_schema_items():
    schema = {"type": "array", "items": {"type": "integer"}}
    v = Validators(json_schema=schema)
    assert v("[1, 2, 3]").passed is True
    result = v('[1, "two", 3, "four"]')
    assert result.passed is False
    assert len(result.errors) == 1


def test_result_is_json_serialisable():
    result = Validators(json_schema=PERSON_SCHEMA)('{"name": 1, "age": "x"}')
    encoded = json.dumps({"passed": result.passed, "kind": result.kind, "errors": result.errors})
    assert json.loads(encoded)["errors"][0]["validator"] == "json_schema"


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        None,
        {},
        {"predictions": None},
        {"predictions": {}},
        {"predictions": {"validators": None}},
        {"predictions": {"validators": {}}},
        {"predictions": {"validators": {"json_parse": False}}},
        {"predictions": {"validators": {"json_parse": False, "json_schema": None}}},
        {"other": {"validators": {"json_parse": True}}},
    ],
)
def test_from_config_without_validators(config):
    assert Validators.from_config(config) is None


def test_from_config_json_parse():
    v = Validators.from_config({"predictions": {"validators": {"json_parse": True}}})
    assert v is not None
    assert v.kind == "json_parse"


def test_from_config_json_schema():
    v = Validators.from_config({"predictions": {"validators": {"json_schema": PERSON_SCHEMA}}})
    assert v is not None
    assert v.kind == "json_parse+json_schema"
    assert v('{"name": "a", "age": 1}').passed is True


def test_validate_without_validators_is_none():
    assert validate("anything", None) is None
    result = validate("{}", Validators(json_parse=True))
    assert result is not None
    assert result.passed is True


def test_invalid_schema_is_rejected_when_building():
    with pytest.raises(SchemaError):
        Validators(json_schema={"type": 12})


@pytest.mark.parametrize(
    "config",
    [
        {"predictions": {"validators": {"json_schema": {"type": 12}}}},
        {"predictions": {"validators": {"json_schema": {"type": "no-such-type"}}}},
        {"predictions": {"validators": {"json_schema": {"required": "name"}}}},
        {"predictions": {"validators": {"json_schema": "not a schema"}}},
        {"predictions": {"validators": "yes"}},
        {"predictions": "x"},
    ],
)
def test_check_validators_config_explains_bad_configs(config):
    reason = check_validators_config(config)
    assert isinstance(reason, str)
    assert reason


@pytest.mark.parametrize(
    "config",
    [
        None,
        {},
        {"predictions": {"validators": {"json_parse": True}}},
        {"predictions": {"validators": {"json_schema": PERSON_SCHEMA}}},
    ],
)
def test_check_validators_config_accepts_good_configs(config):
    assert check_validators_config(config) is None


# --- outputs and schemas that used to raise out of the validator (a 500 for the whole batch)


@pytest.mark.parametrize(
    ("schema", "output"),
    [
        ({"type": "array", "items": {"$ref": "#"}}, "[" * 900 + "]" * 900),  # RecursionError
        ({"multipleOf": 0.5}, "1" + "0" * 400),  # OverflowError inside jsonschema
        ({"$ref": "http://127.0.0.1:9/schema.json"}, "{}"),  # never fetched: Unresolvable
        ({"$ref": "#/$defs/missing"}, "{}"),
        ({"properties": {"a": {"$ref": "other.json"}}}, '{"a": 1}'),
    ],
    ids=["deep-recursive", "overflow", "remote-ref", "missing-pointer", "relative-ref"],
)
def test_outputs_that_cannot_be_validated_fail_with_a_json_schema_error(schema, output):
    result = Validators(json_schema=schema)(output)
    assert result.passed is False
    assert len(result.errors) == 1
    assert_error_item(result.errors[0], "json_schema")
    assert result.errors[0]["message"].startswith("output cannot be validated")


def test_integers_beyond_64_bits_are_validated_exactly():
    schema = {"type": "integer", "multipleOf": 3}
    assert Validators(json_schema=schema)(str(2**64 + 2)).passed  # a float would say 2**64
    assert not Validators(json_schema=schema)(str(2**64 + 1)).passed


@pytest.mark.parametrize("text", ["1e400", "-1e999", '"\\ud800"', '["\\udfff"]', "NaN"])
def test_numbers_beyond_a_double_lone_surrogates_and_nan_are_not_json(text):
    result = Validators(json_parse=True)(text)
    assert result.passed is False
    assert_error_item(result.errors[0], "json_parse")
