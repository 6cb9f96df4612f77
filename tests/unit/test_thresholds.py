"""Score thresholds (stop_when, the checkpoint gate) and the gate's verdict on a round."""

from __future__ import annotations

import math

import pytest

from finetune_lab.cli_gate import parse_thresholds
from finetune_lab.client.gate import evaluate_gate, gate_spec
from finetune_lab.errors import NotFoundError, ValidationError
from finetune_lab.schema import TrendPoint, TrendsResponse
from finetune_lab.thresholds import threshold_value


@pytest.mark.parametrize(
    ("metric", "value", "expected"),
    [
        ("exact_match", 0, 0.0),
        ("exact_match", 1, 1.0),
        ("char_error_rate", 0.25, 0.25),
        ("length_ratio", 3.5, 3.5),  # not a unit-interval score
        ("bleu", -7, -7.0),  # custom metrics take any finite number
    ],
)
def test_threshold_accepted(metric: str, value: float, expected: float) -> None:
    assert threshold_value("min", metric, value) == expected


@pytest.mark.parametrize(
    ("metric", "value", "reason"),
    [
        ("exact_match", True, "must be a number"),  # a bool is not a threshold
        ("exact_match", "0.9", "must be a number"),
        ("bleu", math.nan, "must be finite"),
        ("bleu", math.inf, "must be finite"),
        ("exact_match", 90, "within [0, 1]"),  # 90 for 90% is a typo
        ("validation_pass_rate", -0.1, "within [0, 1]"),
    ],
)
def test_threshold_refused(metric: str, value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"max\['{metric}'\].*{reason}".replace("[0", r"\[0")):
        threshold_value("max", metric, value)


def test_cli_thresholds_split_on_the_last_equals_sign() -> None:
    assert parse_thresholds(["exact_match=0.9", "a=b=2"]) == {"exact_match": 0.9, "a=b": 2.0}
    for bad, reason in [("0.9", "METRIC=VALUE"), ("=1", "METRIC=VALUE"), ("em=x", "not a number")]:
        with pytest.raises(ValueError, match=reason):
            parse_thresholds([bad])
    with pytest.raises(ValueError, match="twice"):
        parse_thresholds(["em=1", "em=0.5"])


def _trends(*points: TrendPoint) -> TrendsResponse:
    return TrendsResponse(job_id="j", group_by="step", trends=list(points))


def _point(
    epoch: int, step: int, em: float | None, cer: float | None, **metrics: float
) -> TrendPoint:
    return TrendPoint(
        epoch=epoch,
        step=step,
        sample_count=4,
        avg_exact_match=em,
        avg_char_error_rate=cer,
        metrics=metrics,
    )


TRENDS = _trends(_point(0, 0, 0.1, 0.8), _point(1, 10, 0.5, 0.4, bleu=0.3), _point(1, 20, 0.9, 0.1))


def test_gate_judges_the_latest_round_by_default() -> None:
    result = evaluate_gate(
        TRENDS, gate_spec({"exact_match": 0.9}, {"char_error_rate": 0.1}, None, None)
    )
    assert (result.round.epoch, result.round.step) == (1, 20)
    assert result.passed
    assert [c.passed for c in result.checks] == [True, True]


def test_gate_failures_say_why() -> None:
    result = evaluate_gate(TRENDS, gate_spec({"exact_match": 0.6, "bleu": 0.5}, None, None, 10))
    assert not result.passed
    em, bleu = result.checks
    assert (em.value, em.passed, em.reason) == (0.5, False, "0.5 < 0.6")
    assert (bleu.value, bleu.passed, bleu.reason) == (0.3, False, "0.3 < 0.5")
    latest = evaluate_gate(TRENDS, gate_spec({"bleu": 0.1}, None, None, None))
    assert latest.checks[0].reason == "no value for bleu in this round"


def test_gate_epoch_takes_its_last_round() -> None:
    result = evaluate_gate(TRENDS, gate_spec(None, {"char_error_rate": 0.5}, 1, None))
    assert result.round.step == 20


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((None, None, None, None), "at least one threshold"),
        (({"exact_match": 0.5}, None, 1, 10), "not both"),
        (({"exact_match": 2}, None, None, None), r"within \[0, 1\]"),
        (({"": 0.5}, None, None, None), "non-empty"),
        (({"exact_match": 0.5}, None, -1, None), "epoch must be an integer >= 0"),
    ],
)
def test_gate_spec_refuses_bad_arguments(args: tuple, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        gate_spec(*args)


def test_gate_unknown_metric_and_missing_round() -> None:
    with pytest.raises(ValidationError, match="unknown metric 'rouge'"):
        evaluate_gate(TRENDS, gate_spec({"rouge": 0.5}, None, None, None))
    with pytest.raises(NotFoundError, match="no predictions at step 5"):
        evaluate_gate(TRENDS, gate_spec({"exact_match": 0.5}, None, None, 5))
    with pytest.raises(NotFoundError, match="no predictions yet"):
        evaluate_gate(_trends(), gate_spec({"exact_match": 0.5}, None, None, None))
