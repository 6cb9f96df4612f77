"""Judges: a job's model-graded scores. Their config, their prompt template, reading a score out
of a judge model's answer, and the queue entry ingest leaves for the judge worker.

A job's `config.predictions.judges` lists `{"name", "model", "prompt", "min", "max"}`. Each
row the job ingests is graded by each judge after the ingest committed (ingest never waits on a
model); the score lands in the row's `metrics` as `judge:<name>`.
"""

from __future__ import annotations

import math
import re
import string
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from finetune_lab.schema import JUDGE_METRIC_PREFIX
from finetune_lab.server.auth import Principal
from finetune_lab.server.db.serving_tables import judge_runs
from finetune_lab.server.errors import APIError, validation_error
from finetune_lab.server.services import model_registry

METRIC_PREFIX = JUDGE_METRIC_PREFIX
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
PLACEHOLDERS = ("prompt", "prediction", "ground_truth")
MAX_JUDGES = 8
MAX_TEMPLATE_CHARS = 20_000
SPEC_KEYS = frozenset({"name", "model", "prompt", "min", "max"})
# A number as people write one: 7, -2, 3.5, .5, 1e3 (not 7/10's 10: only the first is read).
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
SCORE_LABEL = re.compile(r"score\s*[:=]", re.IGNORECASE)
LABELLED = re.compile(rf"[\s*]*({NUMBER})")
FIRST_NUMBER = re.compile(NUMBER)


@dataclass(frozen=True)
class Judge:
    name: str
    model: str
    prompt: str
    min: float
    max: float

    @property
    def metric(self) -> str:
        return METRIC_PREFIX + self.name

    def render(self, prompt: str, prediction: str, ground_truth: str | None) -> str:
        return self.prompt.format(
            prompt=prompt, prediction=prediction, ground_truth=ground_truth or ""
        )


class ScoreError(ValueError):
    """The answer holds no usable score (the message says why)."""


def parse_score(answer: str, low: float, high: float) -> float:
    """The score in a judge's answer, which must lie within [low, high]: when the answer has a
    `score:` (or `score =`, any case) label, the number right after the last one (none there:
    unparseable); otherwise the first number in the answer."""
    labels = list(SCORE_LABEL.finditer(answer))
    if labels:
        match = LABELLED.match(answer, labels[-1].end())
        if match is None:
            raise ScoreError("unparseable: no number after the answer's last 'score:'")
        found = match.group(1)
    else:
        first = FIRST_NUMBER.search(answer)
        if first is None:
            raise ScoreError("unparseable: the answer holds no number")
        found = first.group(0)
    value = float(found)
    if not math.isfinite(value):
        raise ScoreError(f"unparseable: {found!r} is not a finite number")
    if not low <= value <= high:
        raise ScoreError(f"out of range: {value:g} is not within [{low:g}, {high:g}]")
    return value


def _template_problem(template: str) -> str | None:
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"is not a valid template ({exc}; write a literal brace as {{{{ or }}}})"
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + "}"
            return (
                f"has the placeholder {shown}: only {{prompt}}, {{prediction}} and "
                "{ground_truth} are filled in (write a literal brace as {{ or }})"
            )
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _spec_problem(index: int, spec: Any, seen: set[str]) -> tuple[str, str] | None:
    """(field, message) of the first problem of one judge spec, or None."""
    if not isinstance(spec, dict):
        return "", "must be an object {name, model, prompt, min, max}"
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        return unknown[0], "is not a judge setting (name, model, prompt, min, max)"
    missing = sorted(SPEC_KEYS - set(spec))
    if missing:
        return missing[0], "is required"
    name = spec["name"]
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        return "name", "must be a letter then up to 63 letters, digits, _ or -"
    if name in seen:
        return "name", f"{name!r} names two judges"
    seen.add(name)
    if not isinstance(spec["model"], str) or not 1 <= len(spec["model"]) <= 200:
        return "model", "must name a registered model (1-200 characters)"
    template = spec["prompt"]
    if not isinstance(template, str) or not 1 <= len(template) <= MAX_TEMPLATE_CHARS:
        return "prompt", f"must be a template of 1 to {MAX_TEMPLATE_CHARS} characters"
    problem = _template_problem(template)
    if problem:
        return "prompt", problem
    low, high = _number(spec["min"]), _number(spec["max"])
    if low is None:
        return "min", "must be a finite number"
    if high is None:
        return "max", "must be a finite number"
    if not low < high:
        return "max", "must be greater than min"
    return None


def _problem(loc: list[Any], message: str) -> APIError:
    where = ".".join(str(part) for part in loc)
    text = f"{where}: {message}"
    return validation_error(text, [{"loc": loc, "message": message, "type": "value_error"}])


def raw_specs(config: dict[str, Any] | None) -> Any:
    predictions = (config or {}).get("predictions")
    return predictions.get("judges") if isinstance(predictions, dict) else None


def judges_of(config: dict[str, Any] | None) -> list[Judge]:
    """The judges of a stored job config (checked at creation; a job from before judges
    existed may hold anything there: what is not a valid judge is ignored)."""
    specs = raw_specs(config)
    if not isinstance(specs, list):
        return []
    seen: set[str] = set()
    return [
        Judge(s["name"], s["model"], s["prompt"], float(s["min"]), float(s["max"]))
        for index, s in enumerate(specs)
        if _spec_problem(index, s, seen) is None
    ]


def check_config(conn: Connection, principal: Principal, config: dict[str, Any] | None) -> None:
    """422 unless `config.predictions.judges` is absent or a list of valid judges whose models
    are in the caller's registry."""
    specs = raw_specs(config)
    base: list[Any] = ["body", "config", "predictions", "judges"]
    if specs is None:
        return
    if not isinstance(specs, list):
        raise _problem(base, "must be a list of judges")
    if len(specs) > MAX_JUDGES:
        raise _problem(base, f"at most {MAX_JUDGES} judges per job")
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        problem = _spec_problem(index, spec, seen)
        if problem:
            field, message = problem
            raise _problem([*base, index, *([field] if field else [])], message)
        if model_registry.find_model(conn, principal, spec["model"]) is None:
            raise _problem(
                [*base, index, "model"],
                f"no model named {spec['model']!r} in your registry: register it at /api/models",
            )


def enqueue(
    conn: Connection, job_id: str, user_id: int, keys: list[tuple[int, int]], rows_at: datetime
) -> str:
    """Inside the ingest transaction: one queued run grading the batch's rows (one row insert,
    whatever the batch size)."""
    run_id = f"jdg_{uuid.uuid4().hex}"
    conn.execute(
        insert(judge_runs).values(
            id=run_id,
            user_id=user_id,
            job_id=job_id,
            rows_at=rows_at,
            keys=[list(key) for key in keys],
            status="queued",
            attempts=0,
            created_at=rows_at,
        )
    )
    return run_id
