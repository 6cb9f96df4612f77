"""Round rollups: sums and counts merged exactly, divided only at the end; the trend point,
`overall_improvement` and `best` built from them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_lab.server.services.queries import best_rounds, overall_improvement, trend_point
from finetune_lab.server.services.rollups import RoundTotals

score = st.one_of(st.none(), st.floats(min_value=0, max_value=1))
rows = st.lists(
    st.fixed_dictionaries(
        {
            "exact_match": score,
            "char_error_rate": score,
            "length_ratio": st.one_of(st.none(), st.floats(min_value=0, max_value=50)),
            "word_overlap": score,
            "validation_pass": st.one_of(st.none(), st.booleans()),
            "metrics": st.one_of(
                st.none(),
                st.dictionaries(st.sampled_from(["bleu", "rouge"]), st.floats(-5, 5), max_size=2),
            ),
        }
    ),
    max_size=12,
)


def mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a == pytest.approx(b))


@settings(deadline=None)  # a loaded CI machine can pause any example
@given(rows, rows)
def test_merging_two_rounds_equals_totals_of_all_rows(a: list[dict], b: list[dict]) -> None:
    merged = RoundTotals.of_predictions(a)
    merged.merge(RoundTotals.of_predictions(b))
    point = trend_point(1, 10, merged)
    both = a + b
    assert point["sample_count"] == len(both)
    for field, column in [
        ("avg_exact_match", "exact_match"),
        ("avg_char_error_rate", "char_error_rate"),
        ("avg_length_ratio", "length_ratio"),
        ("avg_word_overlap", "word_overlap"),
    ]:
        assert close(point[field], mean([r[column] for r in both])), field
    cers = [r["char_error_rate"] for r in both if r["char_error_rate"] is not None]
    assert point["min_char_error_rate"] == (min(cers) if cers else None)
    assert point["max_char_error_rate"] == (max(cers) if cers else None)
    flags = [r["validation_pass"] for r in both if r["validation_pass"] is not None]
    assert close(point["validation_pass_rate"], mean([1.0 if f else 0.0 for f in flags]))
    for name in ("bleu", "rouge"):
        values = [r["metrics"][name] for r in both if r["metrics"] and name in r["metrics"]]
        assert close(point["metrics"].get(name), mean(values) if values else None), name


def test_averages_never_average_averages() -> None:
    """Epoch of two rounds, 1 row at CER 1.0 and 3 rows at 0.0: the mean is 0.25, not 0.5."""
    first = RoundTotals.of_predictions([_row(cer=1.0)])
    first.merge(RoundTotals.of_predictions([_row(cer=0.0)] * 3))
    assert first.mean("cer") == 0.25


def test_a_round_without_values_has_null_averages() -> None:
    totals = RoundTotals.of_predictions([_row(cer=None), _row(cer=None)])
    point = trend_point(0, 0, totals)
    assert point["sample_count"] == 2
    assert point["avg_char_error_rate"] is None
    assert point["min_char_error_rate"] is None
    assert point["validation_pass_rate"] is None
    assert point["metrics"] == {}


@settings(deadline=None)  # a loaded CI machine can pause any example
@given(rows)
def test_rollup_row_round_trip(sent: list[dict]) -> None:
    """What ingest writes (to_row) reads back (from_row) to the same totals."""
    totals = RoundTotals.of_predictions(sent)
    stored = totals.to_row("job", 5, 1)
    back = RoundTotals.from_row(SimpleNamespace(_mapping=stored))
    assert trend_point(1, 5, back) == trend_point(1, 5, totals)


def _row(cer: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "exact_match": None,
        "char_error_rate": cer,
        "length_ratio": None,
        "word_overlap": None,
        "validation_pass": None,
        "metrics": None,
        **extra,
    }


def _point(cer: float | None, em: float | None = None, **metrics: float) -> dict[str, Any]:
    return {
        "avg_char_error_rate": cer,
        "avg_exact_match": em,
        "avg_word_overlap": None,
        "validation_pass_rate": None,
        "metrics": metrics,
    }


@pytest.mark.parametrize(
    ("cers", "expected"),
    [
        ([0.5, 0.25], 50.0),
        ([0.5, 0.3, 0.75], -50.0),  # first and last only
        ([0.5], None),  # fewer than two groups
        ([], None),
        ([None, 0.2], None),
        ([0.5, None], None),
        ([0.0, 0.2], None),  # a first CER of 0 cannot improve
    ],
)
def test_overall_improvement(cers: list[float | None], expected: float | None) -> None:
    got = overall_improvement([_point(c) for c in cers])
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_best_rounds_ties_go_to_the_earliest_round() -> None:
    rounds = [
        {"epoch": 0, "step": 0, **_point(0.5, 0.1)},
        {"epoch": 1, "step": 10, **_point(0.2, 0.9, bleu=0.4)},
        {"epoch": 2, "step": 20, **_point(0.2, 0.9, bleu=0.4)},  # ties: not better
        {"epoch": 3, "step": 30, **_point(0.3, None, bleu=0.7)},
    ]
    best = best_rounds(rounds)
    assert best["char_error_rate"] == {"epoch": 1, "step": 10, "value": 0.2}
    assert best["exact_match"] == {"epoch": 1, "step": 10, "value": 0.9}
    assert best["metrics"] == {"bleu": {"epoch": 3, "step": 30, "value": 0.7}}
    assert "word_overlap" not in best  # no value in any round
    assert "validation_pass_rate" not in best
