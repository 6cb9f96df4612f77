"""Per-row scoring and validation of a chunk of rows, under time budgets.

Runs in the server's scoring processes (finetune_lab.server.services.scoring_pool), whose main
thread owns SIGALRM: a row whose validation runs past its budget is interrupted and recorded
as a timeout, the chunk goes on. Scores need no budget: each is bounded by construction
(metrics.CER_MAX_CELLS). Called in-process (no pool), the same code runs without budgets,
because only a process's main thread may take signals.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from finetune_lab.scoring.metrics import score
from finetune_lab.scoring.validators import UnusableValidators, Validators, compile_validators

# (exact_match, char_error_rate, length_ratio, word_overlap, validation_pass, validation_kind,
# validation_errors): one row's columns, in this order.
RowResult = tuple[Any, ...]
NOT_VALIDATED = (None, None, None)
CACHED_VALIDATOR_SETS = 32


@dataclass(frozen=True)
class ValidatorSpec:
    """A job's validators config as sent to the workers: JSON bytes and their digest, which
    keys each worker's cache of compiled validator sets (a job's config never changes)."""

    key: str
    config: bytes

    @classmethod
    def of(cls, config: dict[str, Any] | None) -> ValidatorSpec | None:
        spec = ((config or {}).get("predictions") or {}).get("validators") or {}
        if not spec.get("json_parse") and spec.get("json_schema") is None:
            return None
        data = orjson.dumps({"predictions": {"validators": spec}}, option=orjson.OPT_SORT_KEYS)
        return cls(hashlib.sha256(data).hexdigest(), data)


@dataclass(frozen=True)
class Budget:
    """Seconds of validation: per row, and for the whole chunk (its share of the batch's)."""

    row_s: float
    chunk_s: float


_compiled: OrderedDict[str, tuple[Validators | None, str | None]] = OrderedDict()


def _compile(spec: ValidatorSpec) -> tuple[Validators | None, str | None]:
    """The validator set of a config (or why it is unusable), compiled once per process."""
    if spec.key in _compiled:
        _compiled.move_to_end(spec.key)
        return _compiled[spec.key]
    compiled = _compiled[spec.key] = compile_validators(orjson.loads(spec.config))
    if len(_compiled) > CACHED_VALIDATOR_SETS:
        _compiled.popitem(last=False)
    return compiled


def _validators(spec: ValidatorSpec) -> Validators | None:
    validators, problem = _compile(spec)
    return UnusableValidators(problem) if problem is not None else validators


class BudgetExceeded(BaseException):
    """Raised inside a row's validation by SIGALRM; a BaseException so that no library's
    `except Exception` swallows it."""


_armed = False


def _on_alarm(signum: int, frame: Any) -> None:
    if _armed:  # a late signal after the row finished must not hit the next statement
        raise BudgetExceeded


def can_interrupt() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    global _armed
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _armed = True
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        _armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def timeout_error(validators: Validators, message: str, budget_s: float) -> dict[str, Any]:
    """The one validation error of a row whose validation did not finish within its budget."""
    validator = "json_schema" if "json_schema" in validators.kind else "json_parse"
    return {
        "validator": validator,
        "type": "timeout",
        "message": message,
        "detail": {"budget_s": budget_s},
    }


def _timed_out(validators: Validators, message: str, budget_s: float) -> tuple[Any, ...]:
    return (False, validators.kind, [timeout_error(validators, message, budget_s)])


def score_chunk(
    spec: ValidatorSpec | None,
    rows: list[tuple[str, str | None]],
    budget: Budget | None,
    validate: bool = True,
) -> list[RowResult]:
    """Scores and validation of (prediction, ground_truth) rows, in order.

    `budget` None: no time limits (in-process use). `validate` False: scores only, every row
    recorded as timed out (the last resort after a worker had to be killed on one row)."""
    validators = _validators(spec) if spec is not None else None
    interruptible = budget is not None and can_interrupt()
    deadline = time.monotonic() + budget.chunk_s if budget is not None else 0.0
    results: list[RowResult] = []
    for prediction, truth in rows:
        scores = tuple(score(prediction, truth))
        if validators is None:
            results.append(scores + NOT_VALIDATED)
            continue
        if budget is not None and not validate:
            message = f"validation did not finish within the {budget.row_s:g} s budget per row"
            results.append(scores + _timed_out(validators, message, budget.row_s))
            continue
        left = deadline - time.monotonic()
        if budget is not None and left <= 0:
            message = "not validated: the batch's validation time budget was spent"
            results.append(scores + _timed_out(validators, message, budget.chunk_s))
            continue
        if not interruptible or budget is None:
            result = validators(prediction)
            results.append((*scores, result.passed, result.kind, result.errors))
            continue
        allowed = min(budget.row_s, left)
        try:
            with _alarm(allowed):
                result = validators(prediction)
        except BudgetExceeded:
            if allowed < budget.row_s:
                message = "validation stopped: the batch's validation time budget was spent"
            else:
                message = f"validation took longer than the {budget.row_s:g} s budget per row"
            results.append(scores + _timed_out(validators, message, allowed))
            continue
        results.append((*scores, result.passed, result.kind, result.errors))
    return results


def check_config(spec: ValidatorSpec) -> str | None:
    """Why a job's validators config is unusable, or None; a usable one stays compiled here."""
    return _compile(spec)[1]


def init_worker() -> None:
    """Scoring processes leave Ctrl-C to the server, which stops them itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
