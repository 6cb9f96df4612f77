"""Checkpoints name their training run: a registered model may say which job and step it came
from, and each span of a call to it carries the same pair, so the job page can show how its
checkpoint is served (and the model links back to the round's predictions).

Rows from before this revision keep NULL: models with no job, spans of such models.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("job_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("step", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("traces") as batch:
        batch.add_column(sa.Column("job_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("step", sa.BigInteger(), nullable=True))
        batch.create_index("ix_traces_user_job_created", ["user_id", "job_id", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("traces") as batch:
        batch.drop_index("ix_traces_user_job_created")
        batch.drop_column("step")
        batch.drop_column("job_id")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("step")
        batch.drop_column("job_id")
