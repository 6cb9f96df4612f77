"""Custom per-row metrics: user functions run on the training side, stored in a row's `metrics`.

A metric is `fn(prediction, ground_truth, sample) -> float | None` (`sample` is the record as
loaded). Whatever a metric does wrong (raises, returns NaN, a string) costs that value only: it
is skipped with one warning per metric and round, never raised into training.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from finetune_lab.training.samples import Sample

logger = logging.getLogger("finetune_lab.training")

MetricFn = Callable[[str, str | None, Mapping[str, Any]], Any]
# The server's limits on a row's `metrics` (schema.PredictionIn.metrics).
MAX_METRICS = 64
MAX_NAME_CHARS = 128
BUILTIN_SCORES = (
    "exact_match",
    "char_error_rate",
    "length_ratio",
    "word_overlap",
    "validation_pass_rate",
)


def check_metrics(metrics: Mapping[str, MetricFn] | None) -> dict[str, MetricFn]:
    """The metrics as a plain dict; ValueError for what the server or the logs would refuse."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ValueError("metrics must be a dict of {name: fn(prediction, ground_truth, sample)}")
    if len(metrics) > MAX_METRICS:
        raise ValueError(f"at most {MAX_METRICS} custom metrics, got {len(metrics)}")
    for name, fn in metrics.items():
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or "\x00" in name:
            raise ValueError(
                f"metric name {name!r} must be a string of 1..{MAX_NAME_CHARS} characters "
                "without NUL"
            )
        if name in BUILTIN_SCORES:
            raise ValueError(f"metric name {name!r} is a built-in score; pick another name")
        if not callable(fn):
            raise ValueError(f"metric {name!r} must be callable, got {type(fn).__name__}")
    return dict(metrics)


def _as_float(value: Any) -> float | None:
    """A finite float, or None for anything else (bool counts as 0/1)."""
    if not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) else None


class _Problems:
    """Failures of one metric in one round, reported as a single warning."""

    def __init__(self) -> None:
        self.errors = 0
        self.invalid = 0
        self.first: str | None = None

    def note(self, kind: str, index: int, what: str) -> None:
        if kind == "error":
            self.errors += 1
        else:
            self.invalid += 1
        if self.first is None:
            self.first = f"sample {index}: {what}"


def apply_metrics(
    metrics: Mapping[str, MetricFn],
    rows: Sequence[dict[str, Any]],
    samples: Sequence[Sample],
    *,
    step: int,
) -> None:
    """Add each row's custom metric values as `row["metrics"]` (rows with none get no key)."""
    if not metrics:
        return
    problems: dict[str, _Problems] = {}
    for row, sample in zip(rows, samples, strict=True):
        values: dict[str, float] = {}
        for name, fn in metrics.items():
            try:
                raw = fn(row["prediction"], row["ground_truth"], sample.record)
            except Exception as exc:
                problems.setdefault(name, _Problems()).note(
                    "error", row["sample_index"], f"{type(exc).__name__}: {exc}"
                )
                continue
            if raw is None:
                continue  # the metric does not apply to this row
            value = _as_float(raw)
            if value is None:
                problems.setdefault(name, _Problems()).note(
                    "invalid", row["sample_index"], f"returned {raw!r:.80}"
                )
                continue
            values[name] = value
        if values:
            row["metrics"] = values
    for name, found in problems.items():
        logger.warning(
            "finetune-lab: custom metric %r at step %d: %d errors, %d non-finite or non-number "
            "results, skipped (first: %s)",
            name,
            step,
            found.errors,
            found.invalid,
            found.first,
        )
