"""Score thresholds, as the training callback's `stop_when` and the checkpoint gate take them.

Pure Python (no scoring libraries), so the SDK can use it without the server extra.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

LOWER_IS_BETTER = frozenset({"char_error_rate"})
HIGHER_IS_BETTER = frozenset({"exact_match", "word_overlap", "validation_pass_rate"})
# Scores that live in [0, 1]: a threshold outside is a typo (e.g. 90 for 90%), not a target.
UNIT_INTERVAL = LOWER_IS_BETTER | HIGHER_IS_BETTER


def threshold_value(label: str, metric: str, value: Any) -> float:
    """`value` as a threshold of `metric`; ValueError naming `label[metric]` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{label}[{metric!r}] must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{label}[{metric!r}] must be finite, got {value!r}")
    if metric in UNIT_INTERVAL and not 0.0 <= number <= 1.0:
        raise ValueError(f"{label}[{metric!r}] must be within [0, 1], got {value!r}")
    return number
