"""Hypothesis properties of the scores and validators (docs/OVERVIEW.md, "Scores").

The scores are compared with a reference written here from the documented formulas, with its own
Levenshtein (the textbook dynamic programme), not with the library the scorer uses.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from finetune_lab.scoring import Scores, Validators, score, score_batch

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Texts: mostly short and close to each other (so distances are small and interesting), from
# an alphabet with spaces, case pairs, non-ASCII letters and unusual whitespace.
ALPHABET = st.sampled_from(list("abAB  xyzXYZéÉßİ\t\n\u00a0\u2003字0 "))
SHORT = st.text(ALPHABET, max_size=12)
ANY_TEXT = st.text(max_size=30)
TEXT = st.one_of(SHORT, ANY_TEXT)
WHITESPACE = st.text(st.sampled_from([" ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u3000"]))


def levenshtein(a: str, b: str) -> int:
    """Edit distance per code point with unit costs (one row of the DP table at a time)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def norm(s: str) -> str:
    return s.strip().lower()


def reference_scores(prediction: str, ground_truth: str | None) -> Scores:
    """docs/OVERVIEW.md ("Scores"), formula by formula."""
    if ground_truth is None or ground_truth == "":
        return Scores(None, None, None, None)
    pred, truth = norm(prediction), norm(ground_truth)
    exact = 1.0 if pred == truth else 0.0
    if truth:
        cer = min(1.0, levenshtein(pred, truth) / len(truth))
        ratio = len(pred) / len(truth)
    else:
        cer = 0.0 if pred == "" else 1.0
        ratio = 0.0
    pred_words = set(pred.split())
    overlap = len(pred_words & set(truth.split())) / len(pred_words) if pred_words else 0.0
    return Scores(exact, cer, ratio, overlap)


def assert_same_scores(got: Scores, want: Scores) -> None:
    assert got.exact_match == want.exact_match
    for name in ("char_error_rate", "length_ratio", "word_overlap"):
        g, w = getattr(got, name), getattr(want, name)
        if w is None:
            assert g is None, (name, got, want)
        else:
            assert g == pytest.approx(w, rel=1e-12, abs=1e-12), (name, got, want)


# -- scores ------------------------------------------------------------------------------------


@PROFILE
@given(prediction=TEXT, ground_truth=TEXT)
@example(prediction="kitten", ground_truth="sitting")
@example(prediction="  ", ground_truth=" \t")
@example(prediction="x", ground_truth="\u00a0")
@example(prediction="İ", ground_truth="i̇")
def test_scores_match_the_spec_formulas(prediction: str, ground_truth: str) -> None:
    assert_same_scores(score(prediction, ground_truth), reference_scores(prediction, ground_truth))


@PROFILE
@given(prediction=TEXT, ground_truth=TEXT.filter(bool))
def test_scores_stay_in_their_bounds(prediction: str, ground_truth: str) -> None:
    s = score(prediction, ground_truth)
    assert s.exact_match in (0.0, 1.0)
    assert s.char_error_rate is not None and 0.0 <= s.char_error_rate <= 1.0
    assert s.word_overlap is not None and 0.0 <= s.word_overlap <= 1.0
    assert s.length_ratio is not None and s.length_ratio >= 0.0
    assert all(math.isfinite(v) for v in s)


@PROFILE
@given(prediction=TEXT, ground_truth=TEXT.filter(bool))
def test_exact_match_iff_zero_character_error(prediction: str, ground_truth: str) -> None:
    s = score(prediction, ground_truth)
    assert (s.exact_match == 1.0) == (s.char_error_rate == 0.0)
    if s.exact_match == 1.0 and norm(ground_truth):
        assert s.length_ratio == 1.0 and s.word_overlap == 1.0


@PROFILE
@given(prediction=TEXT, ground_truth=st.sampled_from([None, ""]))
def test_no_ground_truth_means_no_scores(prediction: str, ground_truth: str | None) -> None:
    assert score(prediction, ground_truth) == Scores(None, None, None, None)


@PROFILE
@given(text=TEXT.filter(bool))
def test_a_prediction_equal_to_the_truth_is_perfect(text: str) -> None:
    s = score(text, text)
    assert s.exact_match == 1.0 and s.char_error_rate == 0.0
    if norm(text):
        assert s.length_ratio == 1.0 and s.word_overlap == 1.0


@PROFILE
@given(
    prediction=TEXT, ground_truth=TEXT.filter(bool), lead=WHITESPACE, trail=WHITESPACE,
    lead_truth=WHITESPACE, trail_truth=WHITESPACE,
)  # fmt: skip
def test_surrounding_whitespace_does_not_change_scores(
    prediction: str, ground_truth: str, lead: str, trail: str, lead_truth: str, trail_truth: str
) -> None:
    padded_truth = lead_truth + ground_truth + trail_truth
    assert score(lead + prediction + trail, padded_truth) == score(prediction, ground_truth)


@PROFILE
@given(
    prediction=st.text(st.sampled_from(list("abcXYZ 12")), max_size=15),
    ground_truth=st.text(st.sampled_from(list("abcXYZ 12")), min_size=1, max_size=15),
)
def test_case_does_not_change_scores(prediction: str, ground_truth: str) -> None:
    expected = score(prediction, ground_truth)
    assert score(prediction.upper(), ground_truth.swapcase()) == expected
    assert score(prediction.lower(), ground_truth.upper()) == expected


@PROFILE
@given(a=TEXT, b=TEXT)
def test_symmetric_parts_are_symmetric(a: str, b: str) -> None:
    """Exact match is symmetric; the edit distance under CER is too (CER x len(truth))."""
    assume(norm(a) and norm(b))
    ab, ba = score(a, b), score(b, a)
    assert ab.exact_match == ba.exact_match
    assert ab.char_error_rate is not None and ba.char_error_rate is not None
    if ab.char_error_rate < 1.0 and ba.char_error_rate < 1.0:  # not capped either way
        assert ab.char_error_rate * len(norm(b)) == pytest.approx(
            ba.char_error_rate * len(norm(a)), abs=1e-9
        )
    assert ab.length_ratio is not None and ba.length_ratio is not None
    assert ab.length_ratio * ba.length_ratio == pytest.approx(1.0)


@PROFILE
@given(pairs=st.lists(st.tuples(TEXT, st.none() | TEXT), max_size=10))
def test_score_batch_is_score_of_each(pairs: list[tuple[str, str | None]]) -> None:
    assert score_batch(pairs) == [score(p, t) for p, t in pairs]


# -- validators --------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError("out of a double's range")
    return value


def _no_lone_surrogates(value: Any) -> None:
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_lone_surrogates(key)
            _no_lone_surrogates(item)
    elif isinstance(value, list):
        for item in value:
            _no_lone_surrogates(item)


def strict_json_loads(text: str) -> Any:
    """What the validators call JSON: RFC 8259 (Python's parser without its NaN / Infinity
    extension), numbers within a double's range, no escaped lone surrogates."""
    value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    _no_lone_surrogates(value)
    return value


def parses(text: str) -> bool:
    try:
        strict_json_loads(text)
    except (ValueError, RecursionError):
        return False
    return True


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
JSON_TEXT = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.builds(lambda v, ws: ws + json.dumps(v, indent=1) + ws, JSON_VALUES, WHITESPACE),
)


@st.composite
def almost_json(draw: st.DrawFn) -> str:
    """JSON with a slice cut out, a character inserted, or a stray constant: mostly invalid."""
    text = draw(JSON_TEXT)
    how = draw(st.sampled_from(["cut", "insert", "constant", "as_is"]))
    if how == "cut" and text:
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(i, len(text)))
        return text[:i] + text[j:]
    if how == "insert":
        i = draw(st.integers(0, len(text)))
        return text[:i] + draw(st.sampled_from(list(",:[]{}\"'\\ e-+.0x\x00\x01"))) + text[i:]
    if how == "constant":
        return draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "[NaN]", '{"a": Infinity}']))
    return text


@PROFILE
@given(text=st.one_of(JSON_TEXT, almost_json(), st.text(max_size=20)))
@example(text="1e400")  # syntactically JSON, but no double holds it
@example(text='"\\ud800"')  # a lone surrogate is no text
@example(text='"\\ud83d\\ude00"')  # a pair is
@example(text="123456789012345678901234567890")
@example(text="null")
def test_json_parse_passes_iff_the_text_is_json(text: str) -> None:
    result = Validators(json_parse=True)(text)
    assert result.kind == "json_parse"
    assert result.passed == parses(text), (text, result)
    if result.passed:
        assert result.errors == []
    else:
        assert [e["validator"] for e in result.errors] == ["json_parse"]


SCHEMA_TYPES = st.sampled_from(
    ["null", "boolean", "integer", "number", "string", "array", "object"]
)


def schemas(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Small JSON Schemas over the keywords predictions are usually checked with."""
    keyword = st.one_of(
        st.fixed_dictionaries({"type": SCHEMA_TYPES}),
        st.fixed_dictionaries(
            {"type": st.lists(SCHEMA_TYPES, min_size=1, max_size=3, unique=True)}
        ),
        st.fixed_dictionaries({"minimum": st.integers(-(2**70), 2**70)}),
        st.fixed_dictionaries({"maximum": st.integers(-(2**70), 2**70) | st.floats(-1e6, 1e6)}),
        st.fixed_dictionaries({"multipleOf": st.integers(1, 7)}),
        st.fixed_dictionaries({"maxLength": st.integers(0, 6)}),
        st.fixed_dictionaries({"enum": st.lists(values, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"const": values}),
        st.fixed_dictionaries({"required": st.lists(st.text(max_size=3), max_size=2, unique=True)}),
        st.fixed_dictionaries({"minItems": st.integers(0, 3)}),
    )
    flat = st.lists(keyword, min_size=1, max_size=3).map(
        lambda parts: {k: v for part in parts for k, v in part.items()}
    )
    return st.one_of(
        flat,
        st.builds(lambda items: {"type": "array", "items": items}, flat),
        st.builds(
            lambda props: {"type": "object", "properties": props},
            st.dictionaries(st.text(max_size=3), flat, max_size=2),
        ),
    )


@st.composite
def schema_and_value(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    value = draw(JSON_VALUES)
    # Half the time the schema is built from the value itself (const/enum of it), so both
    # passes and failures are common.
    schema = draw(schemas(st.just(value) | JSON_SCALARS))
    return schema, value


@settings(PROFILE, max_examples=400)
@given(pair=schema_and_value())
@example(pair=({"enum": [2**64 + 1]}, 2**64 + 1))
@example(pair=({"multipleOf": 3}, 2**64 + 2))
@example(pair=({"multipleOf": 0.5}, 10**400))
def test_json_schema_validation_agrees_with_jsonschema(pair: tuple[dict[str, Any], Any]) -> None:
    schema, value = pair
    try:
        expected = Draft202012Validator(schema).is_valid(value)
    except OverflowError:  # jsonschema cannot compare it (multipleOf 0.1 on 10**400): a failure
        expected = False
    result = Validators(json_schema=schema)(json.dumps(value))
    assert result.kind == "json_parse+json_schema"
    assert result.passed == expected, (schema, value, result)
    assert len(result.errors) == (0 if expected else 1)
    if not expected:
        assert result.errors[0]["validator"] == "json_schema"
        json.dumps(result.errors)  # stored as JSON
