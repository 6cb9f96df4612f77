"""The four prediction scores, exactly as SPEC section 4 defines them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from rapidfuzz.distance import Levenshtein


class Scores(NamedTuple):
    exact_match: float | None
    char_error_rate: float | None
    length_ratio: float | None
    word_overlap: float | None


NO_SCORES = Scores(None, None, None, None)
# norm(pred) == norm(truth) != "": a non-empty stripped string always has words.
PERFECT = Scores(1.0, 0.0, 1.0, 1.0)
EMPTY_BOTH = Scores(1.0, 0.0, 0.0, 0.0)  # truth is whitespace only and so is the prediction


def score(prediction: str, ground_truth: str | None) -> Scores:
    """Scores of one prediction; all None when there is no (non-empty) ground truth.

    `norm(s) = s.strip().lower()` is inlined: this runs for every ingested row.
    """
    if not ground_truth:
        return NO_SCORES
    pred = prediction.strip().lower()
    truth = ground_truth.strip().lower()
    if pred == truth:  # the common case once a model has learned its task
        return PERFECT if truth else EMPTY_BOTH
    if truth:
        cer = min(1.0, Levenshtein.distance(pred, truth) / len(truth))
        ratio = len(pred) / len(truth)
    else:
        cer, ratio = 1.0, 0.0
    pred_words = set(pred.split())
    overlap = len(pred_words & set(truth.split())) / len(pred_words) if pred_words else 0.0
    return Scores(0.0, cer, ratio, overlap)


def score_batch(pairs: Iterable[tuple[str, str | None]]) -> list[Scores]:
    return [score(prediction, truth) for prediction, truth in pairs]
