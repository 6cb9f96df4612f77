"""Tables for serving: registered models, test suites, batch runs and their results, traces.

Same metadata and column types as `tables.py`; migration 0003 builds them (0007: spans;
0009: the job and step a checkpoint came from).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from finetune_lab.server.db.tables import BigId, Json, Timestamp, metadata


def _queue_columns(table: str) -> list[Column[Any] | Index]:
    """The run columns `BatchWorker` leases by, shared by every table it runs as a queue.

    Goes after the table's own columns; `status` stays with those (its place in the DDL differs
    between tables, and both migrations already created it there).
    """
    return [
        Column("error", Text),
        Column("attempts", Integer, nullable=False),
        Column("lease_owner", String(64)),
        Column("lease_expires_at", Timestamp),
        Column("created_at", Timestamp, nullable=False),
        Column("started_at", Timestamp),
        Column("finished_at", Timestamp),
        # The worker's claim query: runs to start or to take over.
        Index(f"ix_{table}_status_lease", "status", "lease_expires_at"),
    ]


models = Table(
    "models",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", BigId, ForeignKey("users.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # openai | local
    Column("description", String(512)),
    Column("base_url", String(2048)),
    Column("upstream_model", String(512)),
    Column("api_key", Text),  # sent upstream, so kept as given; never returned by the API
    Column("path", String(4096)),
    Column("device", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    # The training run a checkpoint came from (migration 0009).
    Column("job_id", String(128)),
    Column("step", BigInteger),
    UniqueConstraint("user_id", "name", name="uq_models_user_name"),
)

test_suites = Table(
    "test_suites",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", BigId, ForeignKey("users.id"), nullable=False),
    Column("name", String(512), nullable=False),
    Column("description", String(512)),
    Column("item_count", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_test_suites_user_created", "user_id", "created_at"),
)

test_suite_items = Table(
    "test_suite_items",
    metadata,
    Column("suite_id", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("prompt", Text),
    Column("messages", Json),
    Column("expected", Text),
)

test_runs = Table(
    "test_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", BigId, ForeignKey("users.id"), nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("test_suite_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("total_prompts", Integer, nullable=False),
    Column("config", Json, nullable=False),
    *_queue_columns("test_runs"),
    Index("ix_test_runs_user_created", "user_id", "created_at"),
)

test_run_results = Table(
    "test_run_results",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("prompt", Text),  # a snapshot: results outlive edits of their suite
    Column("messages", Json),
    Column("expected", Text),
    Column("response", Text),
    Column("error", Text),
    Column("finish_reason", String(16)),
    Column("latency_ms", Float),
    Column("prompt_tokens", BigInteger),
    Column("completion_tokens", BigInteger),
    Column("total_tokens", BigInteger),
    Column("exact_match", Float),
    Column("char_error_rate", Float),
    Column("length_ratio", Float),
    Column("word_overlap", Float),
    Column("created_at", Timestamp, nullable=False),
)

traces = Table(
    "traces",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", BigId, nullable=False),
    Column("model", String(512)),
    Column("model_id", String(64)),
    Column("operation", String(512), nullable=False),
    Column("status", String(16), nullable=False),  # success | error
    Column("status_code", Integer),
    Column("error_type", String(512)),
    Column("error", Text),
    Column("latency_ms", Float),
    Column("prompt_tokens", BigInteger),
    Column("completion_tokens", BigInteger),
    Column("total_tokens", BigInteger),
    Column("finish_reason", String(16)),
    Column("streamed", Boolean, nullable=False),
    Column("test_run_id", String(64)),
    Column("input", Json),
    Column("output", Text),
    Column("metadata", Json),
    Column("created_at", Timestamp, nullable=False),
    # Spans (migration 0007): a trace is the tree of rows sharing trace_id.
    Column("trace_id", String(64)),
    Column("span_id", String(64)),
    Column("parent_span_id", String(64)),
    Column("span_name", String(512)),
    Column("conversation_id", String(512)),
    Column("provider", String(512)),
    Column("start_time", Timestamp),
    Column("end_time", Timestamp),
    # The called model's training run (migration 0009): serving joined to training.
    Column("job_id", String(128)),
    Column("step", BigInteger),
    # Newest-first pages and time-range aggregates of one user.
    Index("ix_traces_user_created", "user_id", "created_at", "id"),
    Index("ix_traces_user_model_created", "user_id", "model", "created_at"),
    # One trace's spans; one conversation's calls.
    Index("ix_traces_user_trace", "user_id", "trace_id"),
    Index("ix_traces_user_conversation_created", "user_id", "conversation_id", "created_at"),
    Index("ix_traces_user_job_created", "user_id", "job_id", "created_at"),
)

# Model-graded scores: one queued run per ingest batch of a job with judges (the batch test
# queue's lease protocol), and the latest outcome per (row, judge). Migration 0008 builds them.
judge_runs = Table(
    "judge_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", BigId, nullable=False),
    Column("job_id", String(128), nullable=False),
    Column("rows_at", Timestamp, nullable=False),  # the rows' created_at: their version
    Column("keys", Json, nullable=False),  # [[step, sample_index], ...]
    Column("status", String(16), nullable=False),
    *_queue_columns("judge_runs"),
    Index("ix_judge_runs_job", "job_id", "created_at"),
)

judge_results = Table(
    "judge_results",
    metadata,
    Column("job_id", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("sample_index", BigInteger, primary_key=True),
    Column("judge", String(64), primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("rows_at", Timestamp, nullable=False),  # the row version this outcome is for
    Column("status", String(16), nullable=False),  # graded | failed
    Column("value", Float),
    Column("answer", Text),
    Column("error", Text),
    Column("attempts", Integer, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Index("ix_judge_results_run", "run_id"),
)
