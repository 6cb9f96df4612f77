"""Wire models for serving: model registry, chat completions, test suites, batch runs, analytics.

Kept next to `schema.py` (same base classes, same rules): requests are strict, responses
tolerate fields added later. The chat models follow OpenAI's chat completions API so any
OpenAI client can talk to the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AliasChoices,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from finetune_lab.schema import (
    JOB_ID_PATTERN,
    MAX_INT,
    MAX_TEXT_CHARS,
    Name,
    StrictModel,
    WireModel,
    _no_nul,
    check_json_value,
)

Text = Annotated[str, AfterValidator(_no_nul), Field(max_length=MAX_TEXT_CHARS)]
ShortText = Annotated[str, AfterValidator(_no_nul), Field(min_length=1, max_length=512)]
LongText = Annotated[str, AfterValidator(_no_nul), Field(min_length=1, max_length=4096)]
MAX_MESSAGES = 1_000
MAX_SUITE_ITEMS = 10_000
MAX_COMPLETION_TOKENS = 32_768
MAX_CONCURRENCY = 32
MAX_DELAY_MS = 60_000

ModelKind = Literal["openai", "local"]
Device = Literal["auto", "cpu", "cuda"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "function_call"]
TraceStatus = Literal["success", "error"]
RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
Granularity = Literal["hour", "day", "week"]
# Trace and span ids: W3C/OTLP hex ids, or whatever a client uses (UUIDs, "trace_123").
SpanIdText = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
UPSTREAM_STATUS = {"completed": "success", "failed": "error"}


# --- model registry -----------------------------------------------------------------------


class ModelCreate(StrictModel):
    """An OpenAI-compatible endpoint (`base_url`, `upstream_model`, optional `api_key`) or a
    local Hugging Face checkpoint directory (`path`)."""

    name: Annotated[
        str, AfterValidator(_no_nul), Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")
    ]
    kind: ModelKind
    description: Name | None = None
    base_url: Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s]+$")] | None = None
    upstream_model: ShortText | None = None
    api_key: LongText | None = None
    path: LongText | None = None
    device: Device = "auto"
    job_id: Annotated[str, Field(pattern=JOB_ID_PATTERN)] | None = Field(
        None, description="the training job this checkpoint came from (one of yours)"
    )
    step: Annotated[int, Field(ge=0, le=MAX_INT)] | None = Field(
        None, description="the job's step (round) the checkpoint was saved at; needs job_id"
    )

    @model_validator(mode="after")
    def _fields_of_kind(self) -> ModelCreate:
        if self.step is not None and self.job_id is None:
            raise ValueError("'step' names a round of a job: give job_id too")
        if self.kind == "openai":
            if self.base_url is None:
                raise ValueError("an 'openai' model needs base_url (e.g. http://host:8000/v1)")
            if self.path is not None:
                raise ValueError("'path' is only for 'local' models")
        else:
            if self.path is None:
                raise ValueError("a 'local' model needs path (a checkpoint directory)")
            if self.base_url is not None or self.api_key is not None:
                raise ValueError("'base_url' and 'api_key' are only for 'openai' models")
        return self


class RegisteredModel(WireModel):
    """A registered model; its secret is never returned, only whether it has one."""

    id: str
    name: str
    kind: ModelKind
    description: str | None = None
    base_url: str | None = None
    upstream_model: str | None = None
    has_api_key: bool = False
    path: str | None = None
    device: Device = "auto"
    job_id: str | None = None
    step: int | None = None
    created_at: datetime


class ModelsList(WireModel):
    models: list[RegisteredModel]


class ModelDeleted(WireModel):
    id: str
    deleted: bool


class OpenAIModel(WireModel):
    """One entry of `GET /v1/models`, in OpenAI's shape (what OpenAI clients list)."""

    id: str
    object: Literal["model"] = "model"
    created: int  # unix seconds
    owned_by: str


class OpenAIModelList(WireModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


# --- chat completions (OpenAI-compatible) ---------------------------------------------------


class TextPart(StrictModel):
    type: Literal["text"]
    text: Text


class ChatMessage(StrictModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)  # e.g. `name`, `tool_calls`
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Text | list[TextPart]

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(StrictModel):
    include_usage: bool = False


class ChatCompletionRequest(StrictModel):
    """OpenAI's chat body. Unknown fields are ignored (OpenAI clients send many optional ones);
    the known ones are validated."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    model: ShortText
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_COMPLETION_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_COMPLETION_TOKENS)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: ShortText | list[ShortText] | None = None
    n: int = Field(default=1, ge=1, le=1)
    seed: int | None = None
    user: Name | None = None

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return stops


class Usage(WireModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(WireModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(WireModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason


class ChatCompletion(WireModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class ChunkDelta(WireModel):
    wire_optional = frozenset({"role", "content"})  # the first chunk has both, the last neither

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(WireModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(WireModel):
    """One `data:` event of a streamed completion; the last one carries `finish_reason` and
    `usage`, then `data: [DONE]` ends the stream."""

    wire_optional = frozenset({"usage"})  # only on the last chunk

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


# --- test suites --------------------------------------------------------------------------


class TestSuiteItemIn(StrictModel):
    """One test: a `prompt` or chat `messages`, and the `expected` answer (scored when set)."""

    __test__ = False  # not a pytest class
    prompt: Text | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)
    expected: Text | None = None

    @model_validator(mode="after")
    def _one_input(self) -> TestSuiteItemIn:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self


class TestSuiteCreate(StrictModel):
    __test__ = False
    name: ShortText
    description: Name | None = None
    items: list[TestSuiteItemIn] = Field(min_length=1, max_length=MAX_SUITE_ITEMS)


class TestSuiteItem(WireModel):
    __test__ = False
    index: int
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    expected: str | None = None


class TestSuite(WireModel):
    __test__ = False
    wire_optional = frozenset({"items"})
    id: str
    name: str
    description: str | None = None
    item_count: int
    created_at: datetime
    items: list[TestSuiteItem] | None = None  # only on GET /api/test-suites/{id}


class TestSuitesList(WireModel):
    __test__ = False
    test_suites: list[TestSuite]


class TestSuiteDeleted(WireModel):
    __test__ = False
    id: str
    deleted: bool


# --- batch testing ------------------------------------------------------------------------


class BatchRunConfig(StrictModel):
    model_id: ShortText  # a registered model's id or name
    test_suite_id: ShortText
    prompt_limit: int | None = Field(default=None, ge=1, le=MAX_SUITE_ITEMS)
    concurrency: int = Field(default=4, ge=1, le=MAX_CONCURRENCY)
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_COMPLETION_TOKENS)
    # What the upstream SDKs (0.6) send besides: a pause after each prompt, per concurrent
    # lane, and a label kept with the run's config.
    delay_ms: int = Field(default=0, ge=0, le=MAX_DELAY_MS)
    name: ShortText | None = None


class BatchRunRequest(StrictModel):
    config: BatchRunConfig


class BatchRunCancel(StrictModel):
    test_run_id: ShortText = Field(
        validation_alias=AliasChoices("test_run_id", "test_id"),
        description="alias: `test_id` (the upstream SDKs)",
    )


class StartedCounts(WireModel):
    """The upstream SDKs read `results.total_prompts/successful/failed` from a started run."""

    total_prompts: int
    successful: int = 0
    failed: int = 0


class BatchRunStarted(WireModel):
    test_run_id: str
    status: RunStatus
    total_prompts: int
    test_id: str | None = None  # = test_run_id, for the upstream SDKs
    success: bool = True
    results: StartedCounts | None = None


class RunSummary(WireModel):
    scored: int = 0
    avg_exact_match: float | None = None
    avg_char_error_rate: float | None = None
    avg_length_ratio: float | None = None
    avg_word_overlap: float | None = None
    avg_latency_ms: float | None = None
    total_tokens: int = 0


class BatchRunStatus(WireModel):
    test_run_id: str
    test_id: str | None = None  # = test_run_id, for the upstream SDKs
    status: RunStatus
    model_id: str
    test_suite_id: str
    total_prompts: int
    completed_prompts: int
    failed_prompts: int
    progress: float
    config: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    summary: RunSummary


class BatchResult(WireModel):
    index: int
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    expected: str | None = None
    response: str | None = None
    error: str | None = None
    finish_reason: FinishReason | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    exact_match: float | None = None
    char_error_rate: float | None = None
    length_ratio: float | None = None
    word_overlap: float | None = None
    created_at: datetime


class BatchResults(WireModel):
    test_run_id: str
    status: RunStatus
    total: int
    limit: int
    offset: int
    results: list[BatchResult]
    summary: RunSummary


# --- analytics ----------------------------------------------------------------------------


def _alias(name: str, *others: str) -> Any:
    """Accept `name` or one of its upstream-SDK spellings (never both: the other is extra)."""
    return AliasChoices(name, *others)


class TraceCreate(StrictModel):
    """One span to record: a call your own code made (to any model), or one step of it.

    Each field also takes the spelling the upstream SDKs (0.6) send, named in its description;
    a body with both spellings of one field is refused (422).
    """

    model: ShortText | None = Field(
        default=None,
        validation_alias=_alias("model", "model_name"),
        description="alias: model_name",
    )
    provider: ShortText | None = Field(
        default=None,
        validation_alias=_alias("provider", "model_provider"),
        description="alias: model_provider",
    )
    operation: ShortText = Field(
        default="external",
        validation_alias=_alias("operation", "operation_type"),
        description="alias: operation_type",
    )
    status: TraceStatus = Field(
        default="success", description="also: `completed` (= success), `failed` (= error)"
    )
    latency_ms: float | None = Field(
        default=None,
        ge=0,
        le=1e12,
        validation_alias=_alias("latency_ms", "duration_ms"),
        description="alias: duration_ms; default: end_time - start_time",
    )
    prompt_tokens: int | None = Field(
        default=None,
        ge=0,
        le=2**53,
        validation_alias=_alias("prompt_tokens", "input_tokens"),
        description="alias: input_tokens",
    )
    completion_tokens: int | None = Field(
        default=None,
        ge=0,
        le=2**53,
        validation_alias=_alias("completion_tokens", "output_tokens"),
        description="alias: output_tokens",
    )
    total_tokens: int | None = Field(default=None, ge=0, le=2**53)
    error: Text | None = Field(
        default=None,
        validation_alias=_alias("error", "error_message"),
        description="alias: error_message",
    )
    error_type: ShortText | None = None
    input: Any = Field(
        default=None,
        validation_alias=_alias("input", "input_data"),
        description="alias: input_data",
    )
    output: Any = Field(
        default=None,
        validation_alias=_alias("output", "output_data"),
        description="text; alias: output_data (any JSON value, stored as its JSON text)",
    )
    metadata: dict[str, Any] | None = None
    trace_id: SpanIdText | None = Field(default=None, description="default: a new trace")
    span_id: SpanIdText | None = Field(default=None, description="default: a new span id")
    parent_span_id: SpanIdText | None = Field(
        default=None,
        validation_alias=_alias("parent_span_id", "parent_trace_id"),
        description="the enclosing span (none: a root span); alias: parent_trace_id",
    )
    span_name: ShortText | None = None
    conversation_id: ShortText | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    created_at: datetime | None = None  # default: start_time, else now; naive times are UTC

    @field_validator("status", mode="before")
    @classmethod
    def _upstream_status(cls, value: Any) -> Any:
        return UPSTREAM_STATUS.get(value, value) if isinstance(value, str) else value

    @field_validator("input", "metadata")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_json_value(value, "value")

    @field_validator("output")
    @classmethod
    def _text(cls, value: Any) -> str | None:
        if value is None or isinstance(value, str):
            text = value
        else:
            check_json_value(value, "output")
            text = orjson.dumps(value).decode()
        if text is not None and len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"output is longer than {MAX_TEXT_CHARS} characters")
        return _no_nul(text) if text is not None else None

    @model_validator(mode="after")
    def _times(self) -> TraceCreate:
        if self.model is None and self.span_name is None:
            raise ValueError("a trace needs `model` (or `model_name`) or `span_name`")
        if self.start_time and self.end_time and self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self


class Trace(WireModel):
    """One span: a call to a model (ours, recorded by a client, or sent over OTLP)."""

    id: int
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    span_name: str | None = None
    conversation_id: str | None = None
    model: str | None = None
    model_id: str | None = None
    provider: str | None = None
    operation: str
    status: TraceStatus
    status_code: int | None = None
    error_type: str | None = None
    error: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    finish_reason: str | None = None
    streamed: bool = False
    test_run_id: str | None = None
    input: Any = None
    output: str | None = None
    metadata: dict[str, Any] | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    job_id: str | None = None  # the called model's training job and step, if it names them
    step: int | None = None
    created_at: datetime


class TracesPage(WireModel):
    traces: list[Trace]
    next_cursor: str | None = None


class StatsRow(WireModel):
    request_count: int
    success_count: int
    error_count: int
    error_rate: float | None = None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    avg_latency_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


class BucketStats(StatsRow):
    bucket: datetime


class ModelStats(StatsRow):
    model: str | None = None


class AnalyticsData(WireModel):
    start_date: datetime
    end_date: datetime
    granularity: Granularity
    totals: StatsRow
    buckets: list[BucketStats]
    models: list[ModelStats]


class CheckpointStats(StatsRow):
    """How one checkpoint of a job is served: its calls' stats."""

    model: str | None = None
    model_id: str | None = None
    step: int | None = None


class JobServing(WireModel):
    """Calls to the checkpoints a job produced (models registered with its `job_id`)."""

    job_id: str
    totals: StatsRow
    checkpoints: list[CheckpointStats]


class BatchRunsList(WireModel):
    test_runs: list[BatchRunStatus]
