"""Serving: registered models, test suites, batch test runs and results, analytics traces.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", BigId, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.String(512)),
        sa.Column("base_url", sa.String(2048)),
        sa.Column("upstream_model", sa.String(512)),
        sa.Column("api_key", sa.Text),
        sa.Column("path", sa.String(4096)),
        sa.Column("device", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("user_id", "name", name="uq_models_user_name"),
    )
    op.create_table(
        "test_suites",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", BigId, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("description", sa.String(512)),
        sa.Column("item_count", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_test_suites_user_created", "test_suites", ["user_id", "created_at"])
    op.create_table(
        "test_suite_items",
        sa.Column("suite_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("prompt", sa.Text),
        sa.Column("messages", Json),
        sa.Column("expected", sa.Text),
    )
    op.create_table(
        "test_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", BigId, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("test_suite_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total_prompts", sa.Integer, nullable=False),
        sa.Column("config", Json, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", Timestamp),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp),
        sa.Column("finished_at", Timestamp),
    )
    op.create_index("ix_test_runs_status_lease", "test_runs", ["status", "lease_expires_at"])
    op.create_index("ix_test_runs_user_created", "test_runs", ["user_id", "created_at"])
    op.create_table(
        "test_run_results",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("prompt", sa.Text),
        sa.Column("messages", Json),
        sa.Column("expected", sa.Text),
        sa.Column("response", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("finish_reason", sa.String(16)),
        sa.Column("latency_ms", sa.Float),
        sa.Column("prompt_tokens", sa.BigInteger),
        sa.Column("completion_tokens", sa.BigInteger),
        sa.Column("total_tokens", sa.BigInteger),
        sa.Column("exact_match", sa.Float),
        sa.Column("char_error_rate", sa.Float),
        sa.Column("length_ratio", sa.Float),
        sa.Column("word_overlap", sa.Float),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_table(
        "traces",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("model", sa.String(512)),
        sa.Column("model_id", sa.String(64)),
        sa.Column("operation", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error_type", sa.String(512)),
        sa.Column("error", sa.Text),
        sa.Column("latency_ms", sa.Float),
        sa.Column("prompt_tokens", sa.BigInteger),
        sa.Column("completion_tokens", sa.BigInteger),
        sa.Column("total_tokens", sa.BigInteger),
        sa.Column("finish_reason", sa.String(16)),
        sa.Column("streamed", sa.Boolean, nullable=False),
        sa.Column("test_run_id", sa.String(64)),
        sa.Column("input", Json),
        sa.Column("output", sa.Text),
        sa.Column("metadata", Json),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_traces_user_created", "traces", ["user_id", "created_at", "id"])
    op.create_index("ix_traces_user_model_created", "traces", ["user_id", "model", "created_at"])


def downgrade() -> None:
    for table in (
        "traces",
        "test_run_results",
        "test_runs",
        "test_suite_items",
        "test_suites",
        "models",
    ):
        op.drop_table(table)
