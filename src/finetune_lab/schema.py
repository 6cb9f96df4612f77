"""Wire models: the one source of truth for request and response shapes.

The server validates requests and documents responses with these models (they become
`/openapi.json`); the Python SDK parses responses into them, and the TypeScript types follow
the OpenAPI schema. Every response model allows extra fields so older clients keep working when
the server grows a field.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

MAX_BATCH_ITEMS = 5_000
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_TEXT_CHARS = 1_000_000
MAX_PAGE_LIMIT = 1_000
MAX_INT = 2**63 - 1  # counters are 64-bit on every backend (steps may count tokens)
JOB_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
# Metrics named `judge:<name>` are a judge's model-graded scores: set by the server only.
JUDGE_METRIC_PREFIX = "judge:"

JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
Scope = Literal["training", "production", "testing", "all"]
SCOPES: tuple[str, ...] = ("training", "production", "testing", "all")


# Query values of the predictions endpoints, spelled once for the server, the SDK and the CLI.
SortKey = Literal[
    "exact_match",
    "-exact_match",
    "char_error_rate",
    "-char_error_rate",
    "word_overlap",
    "-word_overlap",
    "length_ratio",
    "-length_ratio",
]
SORT_KEYS: tuple[str, ...] = get_args(SortKey)
ExportFormat = Literal["jsonl", "csv", "parquet"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
GroupBy = Literal["epoch", "step"]


@dataclass(frozen=True)
class PredictionFilters:
    """The row filters of the predictions list and export: the SDK sends them as query
    parameters, the server turns them into SQL (`services.queries.filter_clauses`)."""

    epoch: int | None = None
    step: int | None = None
    sample_index: int | None = None
    prompt_id: str | None = None
    validation_pass: bool | None = None
    q: str | None = None  # case-insensitive substring of prompt, prediction or ground truth


def is_valid_job_id(value: str) -> bool:
    return re.fullmatch(JOB_ID_PATTERN, value) is not None


NO_NUL = r"^[^\x00]*$"  # PostgreSQL cannot store U+0000 in text: refused on every backend


def _no_nul(value: str) -> str:
    """Text every backend can store: no U+0000, and no lone surrogate (an unpaired "\\ud800"
    escape in a JSON body is no Unicode text: it cannot be written as UTF-8)."""
    if "\x00" in value:
        raise ValueError("text must not contain the NUL character (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must not contain unpaired surrogates (U+D800..U+DFFF)") from None
    return value


# Free JSON values (job `config`, trace `input`/`metadata`) nest at most this deep. orjson,
# which stores and returns them, stops at 255 levels; pydantic's JSON parser (the SDK reading a
# job back) at about 200: 64 leaves room for any real config or JSON Schema.
MAX_JSON_DEPTH = 64


def check_json_value(value: Any, where: str = "value", _depth: int = 0) -> Any:
    """Reject what JSON columns cannot store: NUL or lone surrogates in strings, NaN and
    infinities, integers beyond 64 bits, nesting deeper than MAX_JSON_DEPTH."""
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must not contain NaN or Infinity")
    elif isinstance(value, int) and not -(2**63) <= value < 2**64:
        raise ValueError(f"{where} must not contain integers beyond 64 bits")
    elif isinstance(value, (dict, list)) and _depth >= MAX_JSON_DEPTH:
        raise ValueError(f"{where} must not nest objects or arrays more than {MAX_JSON_DEPTH} deep")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            check_json_value(item, where, _depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, where, _depth + 1)
    return value


# Prediction texts: lengths are checked in pydantic-core; NUL is checked by the ingest service on
# the raw body (a per-string pattern or Python validator would slow ingest by a third).
BatchText = Annotated[str, Field(max_length=MAX_TEXT_CHARS, json_schema_extra={"pattern": NO_NUL})]
BatchLabel = Annotated[str, Field(max_length=1024, json_schema_extra={"pattern": NO_NUL})]
BatchKey = Annotated[str, Field(max_length=256, json_schema_extra={"pattern": NO_NUL})]
MetricName = Annotated[
    str, Field(min_length=1, max_length=128, json_schema_extra={"pattern": NO_NUL})
]
Name = Annotated[str, AfterValidator(_no_nul), Field(max_length=512)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]


def _wire_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Fields listed in a model's `wire_optional` may be left out of an answer: not required."""
    optional: frozenset[str] = getattr(model, "wire_optional", frozenset())
    if optional and "required" in schema:
        schema["required"] = [name for name in schema["required"] if name not in optional]
        if not schema["required"]:
            del schema["required"]


class WireModel(BaseModel):
    """Response models: tolerant of fields added by newer servers; `raw` keeps the JSON as sent.

    The server sends every field of an answer (null when it has no value), so the output schema
    marks them all required, defaults or not: generated clients (sdk/node's wire.ts) then type
    `x: number | null`, not `x?: ...`. A field the server may leave out is named in
    `wire_optional`. Defaults still apply when the SDK parses an answer from an older server.
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_serialization_defaults_required=True,
        json_schema_extra=_wire_schema,
    )
    wire_optional: ClassVar[frozenset[str]] = frozenset()
    _raw: Any = PrivateAttr(default=None)

    @classmethod
    def from_json_data(cls, data: Any) -> Any:
        model = cls.model_validate(data)
        model._raw = data
        return model

    @property
    def raw(self) -> Any:
        return self._raw if self._raw is not None else self.model_dump(mode="json")


class StrictModel(BaseModel):
    """Request models: unknown fields are a client bug, so they are rejected; so is NaN."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- errors -------------------------------------------------------------------------------


class ErrorDetail(WireModel):
    wire_optional = frozenset({"details"})  # only errors that have details send them

    type: str
    message: str
    details: Any = None


class ErrorBody(WireModel):
    error: ErrorDetail


# --- auth ---------------------------------------------------------------------------------


class SessionResponse(WireModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: str
    scopes: list[str]


class WhoAmI(WireModel):
    user: str
    credential: Literal["api_key", "session", "job_token"]
    scopes: list[str]
    job_id: str | None = None


# --- jobs ---------------------------------------------------------------------------------


class ValidatorsConfig(StrictModel):
    json_parse: bool = False
    json_schema: dict[str, Any] | None = None


class JobCreate(StrictModel):
    id: str | None = Field(default=None, pattern=JOB_ID_PATTERN)
    name: Name | None = None
    model_name: Name | None = None
    config: dict[str, Any] | None = None

    @field_validator("config")
    @classmethod
    def _storable_config(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_json_value(value, "config")


class JobPatch(StrictModel):
    status: JobStatus | None = None
    name: Name | None = None


class Job(WireModel):
    id: str
    name: str | None = None
    model_name: str | None = None
    status: JobStatus
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    prediction_count: int = 0
    round_count: int = 0
    latest_epoch: int | None = None
    latest_step: int | None = None
    job_token: str | None = None


class JobsPage(WireModel):
    jobs: list[Job]
    total: int
    limit: int
    offset: int


class JobDeleted(WireModel):
    job_id: str
    deleted: bool
    predictions_deleted: int


# --- predictions --------------------------------------------------------------------------


class PredictionIn(StrictModel):
    epoch: Count
    step: Count
    sample_index: Count
    prompt: BatchText
    prediction: BatchText
    ground_truth: BatchText | None = None
    prompt_id: BatchKey | None = None
    source_index: Count | None = None
    sample_source: BatchLabel | None = None
    sample_source_id: BatchLabel | None = None
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    total_tokens: Count | None = None
    latency_ms: float | None = Field(default=None, ge=0)
    max_new_tokens: Count | None = None
    do_sample: bool | None = None
    metrics: dict[MetricName, float] | None = Field(default=None, max_length=64)


class PredictionsBatch(StrictModel):
    predictions: list[PredictionIn] = Field(max_length=MAX_BATCH_ITEMS)


class IngestResult(WireModel):
    job_id: str
    accepted: int
    created: int
    updated: int


class ValidationErrorItem(WireModel):
    wire_optional = frozenset({"detail"})  # some validator errors have none

    validator: str
    message: str
    detail: Any = None


class Prediction(WireModel):
    id: int
    job_id: str
    epoch: int
    step: int
    sample_index: int
    prompt: str
    ground_truth: str | None = None
    prediction: str
    created_at: datetime
    exact_match: float | None = None
    char_error_rate: float | None = None
    length_ratio: float | None = None
    word_overlap: float | None = None
    prompt_id: str | None = None
    source_index: int | None = None
    sample_source: str | None = None
    sample_source_id: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    latency_ms: float | None = None
    max_new_tokens: int | None = None
    do_sample: bool | None = None
    validation_pass: bool | None = None
    validation_kind: str | None = None
    validation_errors: list[ValidationErrorItem] | None = None
    metrics: dict[str, float] | None = None


class PredictionsPage(WireModel):
    job_id: str
    predictions: list[Prediction]
    total_count: int
    epoch_count: int
    next_cursor: str | None = None


class EpochSummary(WireModel):
    epoch: int
    prediction_count: int
    latest_step: int


class EpochsResponse(WireModel):
    job_id: str
    epochs: list[EpochSummary]


class TrendPoint(WireModel):
    epoch: int
    step: int
    sample_count: int
    avg_exact_match: float | None = None
    avg_char_error_rate: float | None = None
    avg_length_ratio: float | None = None
    avg_word_overlap: float | None = None
    min_char_error_rate: float | None = None
    max_char_error_rate: float | None = None
    validation_pass_rate: float | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)


class BestRound(WireModel):
    """The round (epoch, step) whose average of one score was the best, and that average."""

    epoch: int
    step: int
    value: float


class BestRounds(WireModel):
    """Per score, the best round: highest average, lowest for CER; ties go to the earliest
    round. Scores without values are absent; length_ratio has no better direction, so none."""

    wire_optional = frozenset(
        {"exact_match", "char_error_rate", "word_overlap", "validation_pass_rate"}
    )

    exact_match: BestRound | None = None
    char_error_rate: BestRound | None = None
    word_overlap: BestRound | None = None
    validation_pass_rate: BestRound | None = None
    metrics: dict[str, BestRound] = Field(default_factory=dict)  # custom: higher is better


class TrendsResponse(WireModel):
    job_id: str
    group_by: Literal["epoch", "step"] = "epoch"
    trends: list[TrendPoint]
    overall_improvement: float | None = None
    best: BestRounds = Field(default_factory=BestRounds)  # always over rounds, whatever group_by


class MatrixRound(WireModel):
    epoch: int
    step: int


class MatrixSample(WireModel):
    sample_index: int
    prompt_id: str | None = None
    values: list[float | None]  # one per round of `rounds`, null where the sample has none


class PredictionMatrix(WireModel):
    """One score of every sample in every round: samples (a page, by sample_index) by rounds."""

    job_id: str
    metric: str
    rounds: list[MatrixRound]
    samples: list[MatrixSample]
    total_samples: int


class JudgeSummary(WireModel):
    """One judge of a job and how far its grading got over the job's current rows."""

    name: str
    metric: str  # judge:<name>, the key of its score in each row's metrics
    model: str
    min: float
    max: float
    graded: int
    failed: int
    pending: int  # rows with neither a score nor a recorded failure (queued, or stopped)


class JudgeFailure(WireModel):
    """A row a judge could not grade: the last answer (when there was one) and why."""

    judge: str
    epoch: int
    step: int
    sample_index: int
    error: str
    answer: str | None = None
    attempts: int
    updated_at: datetime


class JudgeStatus(WireModel):
    """`GET .../{job_id}/judges`: per-judge progress, the queue's runs by status, and a page of
    the rows whose grading failed (current row versions only)."""

    job_id: str
    judges: list[JudgeSummary]
    runs: dict[str, int]
    stopped_reason: str | None = None
    failures: list[JudgeFailure]
    failures_total: int
    limit: int
    offset: int


class SampleRound(WireModel):
    epoch: int
    step: int
    prediction: str
    exact_match: float | None = None
    char_error_rate: float | None = None
    length_ratio: float | None = None
    word_overlap: float | None = None
    validation_pass: bool | None = None
    validation_kind: str | None = None
    validation_errors: list[ValidationErrorItem] | None = None
    metrics: dict[str, float] | None = None
    latency_ms: float | None = None
    completion_tokens: int | None = None
    created_at: datetime
    ground_truth: str | None = None  # this round's own (the sample's is its latest non-null)


class SampleHistory(WireModel):
    job_id: str
    sample_index: int
    prompt: str
    ground_truth: str | None = None
    prompt_id: str | None = None
    rounds: list[SampleRound]


class CompareItem(WireModel):
    sample_index: int
    from_sample_index: int
    to_sample_index: int
    prompt_id: str | None = None
    prompt: str
    ground_truth: str | None = None
    from_prediction: str
    to_prediction: str
    from_char_error_rate: float | None = None
    to_char_error_rate: float | None = None
    from_exact_match: float | None = None
    to_exact_match: float | None = None


class CompareSummary(WireModel):
    improved: int
    regressed: int
    unchanged: int


class CompareUnmatched(WireModel):
    from_: int = Field(alias="from")
    to: int


class CompareResponse(WireModel):
    job_id: str
    to_job_id: str
    from_epoch: int
    to_epoch: int
    from_step: int
    to_step: int
    summary: CompareSummary
    unmatched: CompareUnmatched
    improved: list[CompareItem]
    regressed: list[CompareItem]
    unchanged: list[CompareItem]


class SessionCreate(StrictModel):
    ttl_seconds: int = Field(default=3600, ge=60, le=86_400)


class Health(WireModel):
    status: Literal["ok"]
    version: str | None = None
    database: str | None = None


# --- stream (SSE `data` of each event kind) ------------------------------------------------


class StreamRound(WireModel):
    epoch: int
    step: int
    count: int


class PredictionsEvent(WireModel):
    """`event: predictions`: one ingest batch; rows as the list endpoint returns them, at most
    1,000 rows / 2,000,000 text characters (`truncated` says when more were written)."""

    job_id: str
    count: int
    rounds: list[StreamRound]
    predictions: list[Prediction]
    truncated: bool = False


class RoundCompleteEvent(TrendPoint):
    """`event: round_complete`: a round's totals right after an ingest touched it (the shape of
    a `trends?group_by=step` point)."""

    job_id: str


class HeartbeatEvent(WireModel):
    """`event: heartbeat`: sent on connect and when the stream is idle; carries the position."""

    job_id: str
    last_event_id: int
    time: datetime
