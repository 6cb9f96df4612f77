"""`StopRule` on its own: which way each score counts, and how patience keeps score."""

from __future__ import annotations

from finetune_lab.training.stopping import StopRule


def test_targets_compare_by_the_scores_direction() -> None:
    rule = StopRule({"exact_match": 0.9, "char_error_rate": 0.1}, None, None)
    assert not rule.update({"exact_match": 0.95, "char_error_rate": 0.05}, baseline=True)
    assert not rule.update({"exact_match": 0.95, "char_error_rate": 0.11}, baseline=False)
    assert not rule.update({"exact_match": 0.89, "char_error_rate": 0.05}, baseline=False)
    assert not rule.update({"char_error_rate": 0.0}, baseline=False)  # a missing score is unmet
    assert not rule.update(None, baseline=False)  # a failed round
    assert rule.update({"exact_match": 0.9, "char_error_rate": 0.1}, baseline=False)
    assert rule.reason == "every stop_when target met (exact_match=0.9, char_error_rate=0.1)"


def test_custom_metrics_count_higher_as_better() -> None:
    rule = StopRule({"bleu": 30}, None, None, custom=["bleu"])
    assert not rule.update({"bleu": 29.9}, baseline=False)
    assert rule.update({"bleu": 31.0}, baseline=False)


def test_patience_counts_rounds_since_the_best() -> None:
    rule = StopRule(None, 2, None)  # monitor defaults to char_error_rate: lower is better
    assert not rule.update({"char_error_rate": 0.5}, baseline=True)
    assert not rule.update({"char_error_rate": 0.6}, baseline=False)  # 1 without improvement
    assert not rule.update({"char_error_rate": 0.4}, baseline=False)  # improved: count resets
    assert not rule.update({"char_error_rate": 0.4}, baseline=False)  # equal is no improvement
    assert rule.update({}, baseline=False)  # no value: no improvement either
    assert rule.reason == "char_error_rate did not improve on 0.4 for 2 rounds"


def test_patience_on_a_higher_is_better_score() -> None:
    rule = StopRule(None, 1, "exact_match")
    assert not rule.update({}, baseline=True)  # nothing to improve on yet
    assert not rule.update({"exact_match": 0.2}, baseline=False)
    assert not rule.update({"exact_match": 0.3}, baseline=False)
    assert rule.update({"exact_match": 0.1}, baseline=False)
