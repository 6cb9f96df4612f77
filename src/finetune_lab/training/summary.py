"""A round's averages computed on the training side, equal to what the server's `/trends` says.

The same scoring module and validators the server runs at ingest score every row here, and the
averages follow the server's rollups (mean over the rows that have a value), so the trainer's
loggers and stopping rules see the numbers the dashboard shows, even with the server down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from finetune_lab.scoring import Validators, score

LOG_PREFIX = "predictions/"
SCORE_NAMES = ("exact_match", "char_error_rate", "length_ratio", "word_overlap")


@dataclass(frozen=True)
class RoundSummary:
    """One round: `averages` holds each score, `validation_pass_rate` (with validators) and
    each custom metric by name; a value is absent when no row had one."""

    step: int
    epoch: int
    sample_count: int
    averages: dict[str, float] = field(default_factory=dict)

    def as_logs(self, prefix: str = LOG_PREFIX) -> dict[str, float]:
        return {f"{prefix}{name}": value for name, value in self.averages.items()}


def _mean(values: Sequence[float]) -> float | None:
    # sum() then one division, in row order: the server's rollup arithmetic.
    return sum(values) / len(values) if values else None


def summarize(
    rows: Sequence[dict[str, Any]], validators: Validators | None, *, step: int, epoch: int
) -> RoundSummary:
    """Averages of one round's rows (as sent: prediction, ground_truth, optional metrics)."""
    scored = [score(row["prediction"], row["ground_truth"]) for row in rows]
    averages: dict[str, float] = {}
    for position, name in enumerate(SCORE_NAMES):
        mean = _mean([value for s in scored if (value := s[position]) is not None])
        if mean is not None:
            averages[name] = mean
    if validators is not None and rows:
        passed = sum(1 for row in rows if validators(row["prediction"]).passed)
        averages["validation_pass_rate"] = passed / len(rows)
    custom: dict[str, list[float]] = {}
    for row in rows:
        for name, value in (row.get("metrics") or {}).items():
            custom.setdefault(name, []).append(value)
    for name in sorted(custom):
        averages[name] = sum(custom[name]) / len(custom[name])
    return RoundSummary(step=step, epoch=epoch, sample_count=len(rows), averages=averages)
