"""Traces become spans: trace and span ids, the parent span, a name, a conversation, the
provider, and start/end times, with indexes to fetch one trace or one conversation.

Rows from before this revision keep NULL in the new columns (they were single calls with no
trace context); the API lists them as before.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
COLUMNS = (
    ("trace_id", sa.String(64)),
    ("span_id", sa.String(64)),
    ("parent_span_id", sa.String(64)),
    ("span_name", sa.String(512)),
    ("conversation_id", sa.String(512)),
    ("provider", sa.String(512)),
    ("start_time", Timestamp),
    ("end_time", Timestamp),
)


def upgrade() -> None:
    with op.batch_alter_table("traces") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.create_index("ix_traces_user_trace", ["user_id", "trace_id"])
        batch.create_index(
            "ix_traces_user_conversation_created", ["user_id", "conversation_id", "created_at"]
        )


def downgrade() -> None:
    with op.batch_alter_table("traces") as batch:
        batch.drop_index("ix_traces_user_conversation_created")
        batch.drop_index("ix_traces_user_trace")
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
