"""The four prediction scores, exactly as docs/OVERVIEW.md ("Scores") defines them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from rapidfuzz.distance import Levenshtein


class Scores(NamedTuple):
    exact_match: float | None
    char_error_rate: float | None  # None also past CER_MAX_CELLS: see char_error_rate()
    length_ratio: float | None
    word_overlap: float | None


NO_SCORES = Scores(None, None, None, None)
# norm(pred) == norm(truth) != "": a non-empty stripped string always has words.
PERFECT = Scores(1.0, 0.0, 1.0, 1.0)
EMPTY_BOTH = Scores(1.0, 0.0, 0.0, 0.0)  # truth is whitespace only and so is the prediction

# The edit distance costs about len(pred) * len(truth) / 64 machine words (bit-parallel): past
# this many cells (~30 ms; two 31,622-character texts) CER is not computed and stays null,
# unless the length difference alone already caps it at 1.0. A fixed bound, not a time budget,
# so the same pair scores the same on every machine and under any load.
CER_MAX_CELLS = 10**9


def char_error_rate(pred: str, truth: str) -> float | None:
    """min(1, Levenshtein(pred, truth) / len(truth)) of two normalised, different texts with a
    non-empty truth; None when the bound above forbids computing it."""
    if abs(len(pred) - len(truth)) >= len(truth):  # the distance is at least that: CER is 1.0
        return 1.0
    if len(pred) * len(truth) > CER_MAX_CELLS:
        return None
    # The cutoff lets the library stop early once the distance is past len(truth) (CER 1.0).
    distance = Levenshtein.distance(pred, truth, score_cutoff=len(truth))
    return min(1.0, distance / len(truth))


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
        cer = char_error_rate(pred, truth)
        ratio = len(pred) / len(truth)
    else:
        cer, ratio = 1.0, 0.0
    pred_words = set(pred.split())
    overlap = len(pred_words & set(truth.split())) / len(pred_words) if pred_words else 0.0
    return Scores(0.0, cer, ratio, overlap)


def score_batch(pairs: Iterable[tuple[str, str | None]]) -> list[Scores]:
    return [score(prediction, truth) for prediction, truth in pairs]
