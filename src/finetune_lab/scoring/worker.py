"""Per-row scoring and validation of a chunk of rows, under time budgets.

Runs in the server's scoring processes (finetune_lab.server.services.scoring_pool), whose main
thread owns SIGALRM: a row whose validation runs past its budget is interrupted and recorded
as a timeout, the chunk goes on. Scores need no budget: each is bounded by construction
(metrics.CER_MAX_CELLS). Called in-process (no pool), the same code runs without budgets,
because only a process's main thread may take signals.
"""

from __future__ import annotations

import hashlib
import math
import os
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
    has_schema: bool  # json_parse alone is linear-time; a JSON Schema may cost anything

    @classmethod
    def of(cls, config: dict[str, Any] | None) -> ValidatorSpec | None:
        spec = ((config or {}).get("predictions") or {}).get("validators") or {}
        if not spec.get("json_parse") and spec.get("json_schema") is None:
            return None
        data = orjson.dumps({"predictions": {"validators": spec}}, option=orjson.OPT_SORT_KEYS)
        return cls(hashlib.sha256(data).hexdigest(), data, spec.get("json_schema") is not None)


@dataclass(frozen=True)
class Budget:
    """Seconds of validation: per row, and for the whole chunk (its share of the batch's)."""

    row_s: float
    chunk_s: float


_compiled: OrderedDict[str, tuple[Validators | None, str | None]] = OrderedDict()


def _remember(key: str, compiled: tuple[Validators | None, str | None]) -> None:
    _compiled[key] = compiled
    if len(_compiled) > CACHED_VALIDATOR_SETS:
        _compiled.popitem(last=False)


def _validators(spec: ValidatorSpec) -> Validators | None:
    """The validator set of an ingest, compiled once per process. Its schema was checked when
    the job was created (a job's config never changes), so it is only compiled here."""
    if spec.key in _compiled:
        _compiled.move_to_end(spec.key)
    else:
        _remember(spec.key, compile_validators(orjson.loads(spec.config), checked=True))
    validators, problem = _compiled[spec.key]
    return UnusableValidators(problem) if problem is not None else validators


class BudgetExceeded(BaseException):
    """Raised inside a row's validation by SIGALRM; a BaseException so that no library's
    `except Exception` swallows it."""


# While a chunk runs, SIGALRM ticks every TICK_S and interrupts the row past its deadline: one
# timer per chunk, where arming one per row cost ~40 us a row (a third of a cheap row's work).
TICK_S = 0.02
_row_deadline = math.inf


def _on_tick(signum: int, frame: Any) -> None:
    if time.monotonic() >= _row_deadline:
        raise BudgetExceeded


def can_interrupt() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _ticking() -> Iterator[None]:
    global _row_deadline
    previous = signal.signal(signal.SIGALRM, _on_tick)
    signal.setitimer(signal.ITIMER_REAL, TICK_S, TICK_S)
    try:
        yield
    finally:
        _row_deadline = math.inf
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _validate_within(validators: Validators, prediction: str, seconds: float) -> Any:
    """validators(prediction), or None when it ran past `seconds` (needs _ticking())."""
    global _row_deadline
    try:
        _row_deadline = time.monotonic() + seconds
        result = validators(prediction)
        _row_deadline = math.inf  # a tick after this line must not interrupt the next row
        return result
    except BudgetExceeded:
        _row_deadline = math.inf
        return None


def _kind(spec: ValidatorSpec) -> str:
    return "json_parse+json_schema" if spec.has_schema else "json_parse"


def _timed_out(spec: ValidatorSpec, message: str, budget_s: float) -> tuple[Any, ...]:
    """(validation_pass, kind, errors) of a row whose validation did not finish in time."""
    error = {
        "validator": "json_schema" if spec.has_schema else "json_parse",
        "type": "timeout",
        "message": message,
        "detail": {"budget_s": budget_s},
    }
    return (False, _kind(spec), [error])


def score_chunk(
    spec: ValidatorSpec | None, rows: list[tuple[str, str | None]], budget: Budget | None
) -> list[RowResult]:
    """Scores and validation of (prediction, ground_truth) rows, in order; `budget` None: no
    time limits (in-process use)."""
    validators = _validators(spec) if spec is not None else None
    if spec is None or validators is None or budget is None or not can_interrupt():
        return [_row(validators, prediction, truth) for prediction, truth in rows]
    with _ticking():
        return _score_within(spec, validators, rows, budget)


def scores_only(
    spec: ValidatorSpec, rows: list[tuple[str, str | None]], row_s: float
) -> list[RowResult]:
    """Scores, and a per-row timeout as the validation: the last resort after a worker had to
    be killed on a row. The validators are not even compiled."""
    message = f"validation did not finish within the {row_s:g} s budget per row"
    return [tuple(score(p, t)) + _timed_out(spec, message, row_s) for p, t in rows]


def _row(validators: Validators | None, prediction: str, truth: str | None) -> RowResult:
    scores = tuple(score(prediction, truth))
    if validators is None:
        return scores + NOT_VALIDATED
    result = validators(prediction)
    return (*scores, result.passed, result.kind, result.errors)


def _score_within(
    spec: ValidatorSpec,
    validators: Validators,
    rows: list[tuple[str, str | None]],
    budget: Budget,
) -> list[RowResult]:
    deadline = time.monotonic() + budget.chunk_s
    results: list[RowResult] = []
    for prediction, truth in rows:
        scores = tuple(score(prediction, truth))
        left = deadline - time.monotonic()
        if left <= 0:
            message = "not validated: the batch's validation time budget was spent"
            results.append(scores + _timed_out(spec, message, budget.chunk_s))
            continue
        allowed = min(budget.row_s, left)
        result = _validate_within(validators, prediction, allowed)
        if result is not None:
            results.append((*scores, result.passed, result.kind, result.errors))
        elif allowed < budget.row_s:
            message = "validation stopped: the batch's validation time budget was spent"
            results.append(scores + _timed_out(spec, message, budget.chunk_s))
        else:
            message = f"validation took longer than the {budget.row_s:g} s budget per row"
            results.append(scores + _timed_out(spec, message, budget.row_s))
    return results


def check_config(spec: ValidatorSpec) -> str | None:
    """Why a job's validators config is unusable, or None; a usable one stays compiled here."""
    validators, problem = compile_validators(orjson.loads(spec.config))
    if problem is None:
        _remember(spec.key, (validators, None))
    return problem


# Scoring processes run this much nicer than the server: under a CPU-bound attack (a schema
# that burns its whole budget on every row) the serving process still wins the cores, so other
# users' reads and cheap ingests stay fast; a busy worker still gets about a third of a core's
# share against a busy server (CFS weights), so validation is slowed, never starved.
WORKER_NICENESS = 5


def init_worker() -> None:
    """Scoring processes leave Ctrl-C to the server, which stops them itself, and yield the
    CPU to it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
