"""The checkpoint gate: does one round of a job meet score thresholds?

Written once here for the Python SDK (and the CLI, which calls the SDK); it reads the
`/trends?group_by=step` answer, whose points hold each round's exact averages, so the server
needs no gate endpoint. A threshold whose metric has no value in the round fails (it is not
an error): CI must not pass a checkpoint on a score nobody measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeAlias

from finetune_lab.errors import NotFoundError, ValidationError
from finetune_lab.schema import TrendPoint, TrendsResponse
from finetune_lab.thresholds import threshold_value

GateOp: TypeAlias = Literal["min", "max"]

# The round's value of each built-in metric, as `/trends` names it.
BUILTIN_METRICS: dict[str, Callable[[TrendPoint], float | None]] = {
    "exact_match": lambda p: p.avg_exact_match,
    "char_error_rate": lambda p: p.avg_char_error_rate,
    "length_ratio": lambda p: p.avg_length_ratio,
    "word_overlap": lambda p: p.avg_word_overlap,
    "validation_pass_rate": lambda p: p.validation_pass_rate,
}


@dataclass(frozen=True)
class GateRound:
    """The round the gate judged (`/trends?group_by=step` point)."""

    epoch: int
    step: int
    sample_count: int


@dataclass(frozen=True)
class GateCheck:
    """One threshold: `min` passes when value >= threshold, `max` when value <= threshold.
    `reason` says why it failed (None when it passed)."""

    metric: str
    op: GateOp
    threshold: float
    value: float | None
    passed: bool
    reason: str | None = None


@dataclass(frozen=True)
class GateResult:
    """`passed` is true when every check passed."""

    job_id: str
    round: GateRound
    checks: list[GateCheck]
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape (the CLI's `--json`, and the TypeScript SDK's result)."""
        return asdict(self)


@dataclass(frozen=True)
class GateSpec:
    """Checked thresholds and round selector, ready to apply to a job's trends."""

    thresholds: list[tuple[str, GateOp, float]]
    epoch: int | None
    step: int | None


def _threshold(metric: Any, op: GateOp, value: Any) -> tuple[str, GateOp, float]:
    if not isinstance(metric, str) or not metric:
        raise ValidationError(f"{op}: metric names must be non-empty strings, got {metric!r}")
    try:
        return metric, op, threshold_value(op, metric, value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def _round_ref(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def gate_spec(
    min: Mapping[str, float] | None,
    max: Mapping[str, float] | None,
    epoch: int | None,
    step: int | None,
) -> GateSpec:
    """Check the arguments before any request; ValidationError names the bad one."""
    thresholds: list[tuple[str, GateOp, float]] = []
    sides: tuple[tuple[GateOp, Mapping[str, float] | None], ...] = (("min", min), ("max", max))
    for op, given in sides:
        if given is None:
            continue
        if not isinstance(given, Mapping):
            raise ValidationError(f"{op} must be a mapping of {{metric: threshold}}")
        thresholds += [_threshold(metric, op, value) for metric, value in given.items()]
    if not thresholds:
        raise ValidationError("the gate needs at least one threshold in min or max")
    if epoch is not None and step is not None:
        raise ValidationError("pass epoch or step, not both")
    return GateSpec(thresholds, _round_ref("epoch", epoch), _round_ref("step", step))


def _pick_round(job_id: str, points: list[TrendPoint], spec: GateSpec) -> TrendPoint:
    """The latest round, the last round of `epoch`, or the round at `step`."""
    if not points:
        raise NotFoundError(f"job {job_id} has no predictions yet, so no round to gate")
    if spec.step is not None:
        found = [p for p in points if p.step == spec.step]
        if not found:
            steps = ", ".join(str(p.step) for p in points)
            raise NotFoundError(
                f"job {job_id} has no predictions at step {spec.step} (steps: {steps})"
            )
        return found[-1]
    if spec.epoch is not None:
        found = [p for p in points if p.epoch == spec.epoch]
        if not found:
            epochs = ", ".join(sorted({str(p.epoch) for p in points}, key=int))
            raise NotFoundError(
                f"job {job_id} has no predictions in epoch {spec.epoch} (epochs: {epochs})"
            )
        return found[-1]
    return points[-1]


def evaluate_gate(trends: TrendsResponse, spec: GateSpec) -> GateResult:
    """Apply `spec` to a job's `group_by=step` trends (points in epoch, step order)."""
    custom = sorted({name for point in trends.trends for name in point.metrics})
    known = set(BUILTIN_METRICS) | set(custom)
    unknown = sorted({metric for metric, _, _ in spec.thresholds} - known)
    point = _pick_round(trends.job_id, trends.trends, spec)
    if unknown:
        listed = ", ".join(list(BUILTIN_METRICS) + custom)
        raise ValidationError(
            f"unknown metric {', '.join(map(repr, unknown))} for job {trends.job_id}; "
            f"known: {listed}"
        )
    checks = []
    for metric, op, threshold in spec.thresholds:
        read = BUILTIN_METRICS.get(metric)
        value = read(point) if read else point.metrics.get(metric)
        if value is None:
            reason: str | None = f"no value for {metric} in this round"
            passed = False
        else:
            passed = value >= threshold if op == "min" else value <= threshold
            reason = None if passed else f"{value:g} {'<' if op == 'min' else '>'} {threshold:g}"
        checks.append(GateCheck(metric, op, threshold, value, passed, reason))
    chosen = GateRound(point.epoch, point.step, point.sample_count)
    return GateResult(trends.job_id, chosen, checks, all(c.passed for c in checks))
