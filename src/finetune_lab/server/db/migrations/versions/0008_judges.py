"""Model-graded scores (judges): the judge run queue and the per-row outcomes.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "judge_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("rows_at", Timestamp, nullable=False),
        sa.Column("keys", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", Timestamp),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp),
        sa.Column("finished_at", Timestamp),
    )
    op.create_index("ix_judge_runs_status_lease", "judge_runs", ["status", "lease_expires_at"])
    op.create_index("ix_judge_runs_job", "judge_runs", ["job_id", "created_at"])
    op.create_table(
        "judge_results",
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("step", sa.BigInteger, primary_key=True),
        sa.Column("sample_index", sa.BigInteger, primary_key=True),
        sa.Column("judge", sa.String(64), primary_key=True),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("rows_at", Timestamp, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("answer", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_judge_results_run", "judge_results", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_judge_results_run", "judge_results")
    op.drop_table("judge_results")
    op.drop_index("ix_judge_runs_job", "judge_runs")
    op.drop_index("ix_judge_runs_status_lease", "judge_runs")
    op.drop_table("judge_runs")
