"""Table definitions (SQLAlchemy Core): the shape the migrations build, used by every query."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData()

# JSON on SQLite, JSONB on PostgreSQL; Python None is SQL NULL, not JSON 'null'.
Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (autoincrement without a scan).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps come back timezone-aware from every backend (SQLite would drop the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


Timestamp = UTCDateTime()

users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", BigId, ForeignKey("users.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(32), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", Json, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("last_used_at", Timestamp),
    Column("revoked_at", Timestamp),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("api_key_id", BigId, ForeignKey("api_keys.id"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("user_id", BigId, ForeignKey("users.id"), nullable=False),
    Column("name", String(512)),
    Column("model_name", String(512)),
    Column("status", String(16), nullable=False),
    Column("config", Json, nullable=False),
    Column("job_token_hash", String(64), unique=True),
    # The key (or the key behind the session) that created the job, or last rotated its
    # token: the job token is valid only while that key is, and spends its rate budget.
    Column("api_key_id", BigId, ForeignKey("api_keys.id"), index=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # How many distinct sample indexes the job's rows have (its rows of `job_samples`), kept
    # at ingest: the matrix reports it without counting.
    Column("distinct_samples", BigInteger, nullable=False, server_default="0"),
    Index("ix_jobs_user_created", "user_id", "created_at"),
)

# Each distinct prompt and ground-truth text of a job, stored once (a 1M-row job with 1,000
# samples holds 1,000 prompts, not a million). Keyed by (job_id, the first 16 bytes of the
# SHA-256 of its UTF-8 form): rows refer to it by id, which is smaller than the digest.
prediction_texts = Table(
    "prediction_texts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", String(128), nullable=False),
    Column("digest", LargeBinary(16), nullable=False),
    Column("text", Text, nullable=False),
    UniqueConstraint("job_id", "digest", name="uq_prediction_texts_job_digest"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", String(128), nullable=False),
    Column("user_id", BigId, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("sample_index", BigInteger, nullable=False),
    # Ids of prediction_texts rows of the same job (no FOREIGN KEY: PostgreSQL checks one with
    # a trigger query per row, which cost ingest a tenth of its speed; ingest takes the ids
    # from that table in the same transaction and only deletes texts no row uses).
    Column("prompt_text_id", BigId, nullable=False),
    Column("truth_text_id", BigId),
    Column("prediction", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("exact_match", Float),
    Column("char_error_rate", Float),
    Column("length_ratio", Float),
    Column("word_overlap", Float),
    Column("prompt_id", String(256)),
    Column("source_index", BigInteger),
    Column("sample_source", String(1024)),
    Column("sample_source_id", String(1024)),
    Column("prompt_tokens", BigInteger),
    Column("completion_tokens", BigInteger),
    Column("total_tokens", BigInteger),
    Column("latency_ms", Float),
    Column("max_new_tokens", BigInteger),
    Column("do_sample", Boolean),
    Column("validation_pass", Boolean),
    Column("validation_kind", String(64)),
    Column("validation_errors", Json),
    Column("metrics", Json),
    # Upsert key; its (job_id, step) prefix also serves round lookups and rollup refreshes.
    UniqueConstraint("job_id", "step", "sample_index", name="uq_predictions_job_step_sample"),
    Index("ix_predictions_read_order", "job_id", "epoch", "step", "sample_index"),
    # A job's rows by sample (the matrix read its samples here before `job_samples`); the text
    # ids: which rows use a text (search by prompt or truth, dropping a text no row uses).
    Index("ix_predictions_job_sample", "job_id", "sample_index"),
    Index("ix_predictions_prompt_text", "prompt_text_id"),
    Index("ix_predictions_truth_text", "truth_text_id"),
)

# Each sample index a job's rows use, once, added at ingest (rows are only ever deleted with
# their job, so a sample never leaves): a matrix page reads its page of samples here, O(page),
# not by a DISTINCT over every row of the job.
job_samples = Table(
    "job_samples",
    metadata,
    Column("job_id", String(128), primary_key=True),
    Column("sample_index", BigInteger, primary_key=True),
    sqlite_with_rowid=False,
)

# Exact per-round sums and counts, refreshed at ingest: /epochs and /trends cost O(rounds).
round_rollups = Table(
    "round_rollups",
    metadata,
    Column("job_id", String(128), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("epoch", BigInteger, primary_key=True),
    Column("sample_count", BigInteger, nullable=False),
    Column("em_sum", Float),
    Column("em_n", BigInteger, nullable=False),
    Column("cer_sum", Float),
    Column("cer_n", BigInteger, nullable=False),
    Column("cer_min", Float),
    Column("cer_max", Float),
    Column("lr_sum", Float),
    Column("lr_n", BigInteger, nullable=False),
    Column("wo_sum", Float),
    Column("wo_n", BigInteger, nullable=False),
    Column("vp_pass", BigInteger, nullable=False),
    Column("vp_n", BigInteger, nullable=False),
    Column("metrics", Json),  # {name: [sum, count]}
)

# What each ingest committed, in commit order per job: the SSE stream replays these by id.
stream_events = Table(
    "stream_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Json, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_stream_events_job_id", "job_id", "id"),
    sqlite_autoincrement=True,
)
