"""Stopping on what the model says: quality targets (`stop_when`) and patience.

Both read a round's averages (`RoundSummary.averages`). Scores where higher is better are
compared with >=, `char_error_rate` with <=; `length_ratio` has no better direction (1.0 is
ideal), so it cannot be a target. Bad names or values fail when the callback is built.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from finetune_lab.thresholds import (
    LOWER_IS_BETTER,
    UNIT_INTERVAL,
    threshold_value,
)


def _allowed(custom: Collection[str], with_validators: bool) -> list[str]:
    builtin = sorted(UNIT_INTERVAL - ({"validation_pass_rate"} if not with_validators else set()))
    return builtin + sorted(custom)


def _check_name(name: Any, what: str, custom: Collection[str], with_validators: bool) -> str:
    allowed = _allowed(custom, with_validators)
    if name == "length_ratio":
        raise ValueError(f"{what}: length_ratio has no better direction (1.0 is ideal)")
    if name == "validation_pass_rate" and not with_validators:
        raise ValueError(f"{what}: validation_pass_rate needs validators=")
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"{what}: unknown score {name!r}; one of {allowed}")
    return name


def _check_threshold(name: str, value: Any) -> float:
    return threshold_value("stop_when", name, value)


class StopRule:
    """Decides after each round whether training should stop.

    `stop_when`: every target met in one training round (the baseline round does not count:
    stopping cannot happen before the first step). `patience`: `monitor` did not improve on its
    best (baseline included) for that many rounds in a row.
    """

    def __init__(
        self,
        stop_when: Mapping[str, float] | None,
        patience: int | None,
        monitor: str | None,
        *,
        custom: Collection[str] = (),
        with_validators: bool = False,
    ) -> None:
        if stop_when is not None and not isinstance(stop_when, Mapping):
            raise ValueError("stop_when must be a dict of {score: threshold}")
        if stop_when is not None and not stop_when:
            raise ValueError("stop_when must name at least one score")
        self.targets = {
            _check_name(name, "stop_when", custom, with_validators): _check_threshold(name, value)
            for name, value in (stop_when or {}).items()
        }
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
        ):
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if monitor is not None and patience is None:
            raise ValueError("monitor needs patience=N")
        self.patience = patience
        self.monitor = (
            _check_name(monitor or "char_error_rate", "monitor", custom, with_validators)
            if patience is not None
            else None
        )
        self.best: float | None = None
        self.rounds_without_improvement = 0
        self.reason: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.targets) or self.patience is not None

    def settings(self) -> dict[str, Any]:
        """What the job config records about stopping."""
        out: dict[str, Any] = {}
        if self.targets:
            out["stop_when"] = dict(self.targets)
        if self.patience is not None:
            out["patience"], out["monitor"] = self.patience, self.monitor
        return out

    def update(self, averages: Mapping[str, float] | None, *, baseline: bool) -> bool:
        """Take one round's averages (None: the round failed); True when training should stop."""
        if averages is None:
            return False
        if (
            not baseline
            and self.targets
            and all(
                self._met(name, target, averages.get(name)) for name, target in self.targets.items()
            )
        ):
            met = ", ".join(f"{name}={averages[name]:.4g}" for name in self.targets)
            self.reason = f"every stop_when target met ({met})"
            return True
        return self._out_of_patience(averages)

    @staticmethod
    def _met(name: str, target: float, value: float | None) -> bool:
        if value is None:
            return False
        return value <= target if name in LOWER_IS_BETTER else value >= target

    def _out_of_patience(self, averages: Mapping[str, float]) -> bool:
        if self.patience is None or self.monitor is None:
            return False
        value = averages.get(self.monitor)
        if value is not None and (self.best is None or self._better(value, self.best)):
            self.best = value
            self.rounds_without_improvement = 0
            return False
        if self.best is None:
            return False  # nothing to improve on yet
        self.rounds_without_improvement += 1
        if self.rounds_without_improvement >= self.patience:
            self.reason = (
                f"{self.monitor} did not improve on {self.best:.4g} for "
                f"{self.rounds_without_improvement} rounds"
            )
            return True
        return False

    def _better(self, value: float, best: float) -> bool:
        return value < best if self.monitor in LOWER_IS_BETTER else value > best
