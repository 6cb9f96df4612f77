"""Wire models for serving: model registry, chat completions, test suites, batch runs, analytics.

Kept next to `schema.py` (same base classes, same rules): requests are strict, responses
tolerate fields added later. The chat models follow OpenAI's chat completions API so any
OpenAI client can talk to the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from finetune_lab.schema import (
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

ModelKind = Literal["openai", "local"]
Device = Literal["auto", "cpu", "cuda"]
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "function_call"]
TraceStatus = Literal["success", "error"]
RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
Granularity = Literal["hour", "day", "week"]


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

    @model_validator(mode="after")
    def _fields_of_kind(self) -> ModelCreate:
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


class BatchRunRequest(StrictModel):
    config: BatchRunConfig


class BatchRunCancel(StrictModel):
    test_run_id: ShortText


class BatchRunStarted(WireModel):
    test_run_id: str
    status: RunStatus
    total_prompts: int


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


class TraceCreate(StrictModel):
    """An external call to record (one your own code made to some model)."""

    model: ShortText
    operation: ShortText = "external"
    status: TraceStatus = "success"
    latency_ms: float | None = Field(default=None, ge=0, le=1e12)
    prompt_tokens: int | None = Field(default=None, ge=0, le=2**53)
    completion_tokens: int | None = Field(default=None, ge=0, le=2**53)
    total_tokens: int | None = Field(default=None, ge=0, le=2**53)
    error: Text | None = None
    error_type: ShortText | None = None
    input: Any = None
    output: Text | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None  # default: now; naive times are UTC

    @field_validator("input", "metadata")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_json_value(value, "value")


class Trace(WireModel):
    id: int
    model: str | None = None
    model_id: str | None = None
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


class BatchRunsList(WireModel):
    test_runs: list[BatchRunStatus]
