"""Initial schema: users, keys, sessions, jobs, predictions, round rollups.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", BigId, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_used_at", Timestamp),
        sa.Column("revoked_at", Timestamp),
    )
    op.create_table(
        "sessions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("api_key_id", BigId, sa.ForeignKey("api_keys.id"), nullable=False, index=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("user_id", BigId, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(512)),
        sa.Column("model_name", sa.String(512)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", Json, nullable=False),
        sa.Column("job_token_hash", sa.String(64), unique=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_jobs_user_created", "jobs", ["user_id", "created_at"])
    op.create_table(
        "predictions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("sample_index", sa.BigInteger, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("ground_truth", sa.Text),
        sa.Column("prediction", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("exact_match", sa.Float),
        sa.Column("char_error_rate", sa.Float),
        sa.Column("length_ratio", sa.Float),
        sa.Column("word_overlap", sa.Float),
        sa.Column("prompt_id", sa.String(256)),
        sa.Column("source_index", sa.BigInteger),
        sa.Column("sample_source", sa.String(1024)),
        sa.Column("sample_source_id", sa.String(1024)),
        sa.Column("prompt_tokens", sa.BigInteger),
        sa.Column("completion_tokens", sa.BigInteger),
        sa.Column("total_tokens", sa.BigInteger),
        sa.Column("latency_ms", sa.Float),
        sa.Column("max_new_tokens", sa.BigInteger),
        sa.Column("do_sample", sa.Boolean),
        sa.Column("validation_pass", sa.Boolean),
        sa.Column("validation_kind", sa.String(64)),
        sa.Column("validation_errors", Json),
        sa.Column("metrics", Json),
        sa.UniqueConstraint(
            "job_id", "step", "sample_index", name="uq_predictions_job_step_sample"
        ),
    )
    op.create_index(
        "ix_predictions_read_order", "predictions", ["job_id", "epoch", "step", "sample_index"]
    )
    op.create_table(
        "round_rollups",
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("step", sa.BigInteger, primary_key=True),
        sa.Column("epoch", sa.BigInteger, primary_key=True),
        sa.Column("sample_count", sa.BigInteger, nullable=False),
        sa.Column("em_sum", sa.Float),
        sa.Column("em_n", sa.BigInteger, nullable=False),
        sa.Column("cer_sum", sa.Float),
        sa.Column("cer_n", sa.BigInteger, nullable=False),
        sa.Column("cer_min", sa.Float),
        sa.Column("cer_max", sa.Float),
        sa.Column("lr_sum", sa.Float),
        sa.Column("lr_n", sa.BigInteger, nullable=False),
        sa.Column("wo_sum", sa.Float),
        sa.Column("wo_n", sa.BigInteger, nullable=False),
        sa.Column("vp_pass", sa.BigInteger, nullable=False),
        sa.Column("vp_n", sa.BigInteger, nullable=False),
        sa.Column("metrics", Json),
    )


def downgrade() -> None:
    for table in ("round_rollups", "predictions", "jobs", "sessions", "api_keys", "users"):
        op.drop_table(table)
