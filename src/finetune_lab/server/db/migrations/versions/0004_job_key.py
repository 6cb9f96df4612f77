"""Jobs remember the API key that created them, so their job token dies with that key.

Jobs from before this revision: when their owner has exactly one API key (keys are revoked,
never deleted, so that key created the job), the job is bound to it. Otherwise the creating key
cannot be known; such a job's token is cleared (it answers 401) rather than left alive beyond
any revocation: the owner rotates it (`POST /api/training/jobs/{id}/token`) to get a new one.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("api_key_id", BigId, nullable=True))
        batch.create_foreign_key("fk_jobs_api_key_id", "api_keys", ["api_key_id"], ["id"])
        batch.create_index("ix_jobs_api_key_id", ["api_key_id"])
    jobs = sa.table(
        "jobs",
        sa.column("user_id", BigId),
        sa.column("api_key_id", BigId),
        sa.column("job_token_hash", sa.String),
    )
    keys = sa.table("api_keys", sa.column("id", BigId), sa.column("user_id", BigId))
    sole_key = (
        sa.select(sa.func.min(keys.c.id))
        .where(keys.c.user_id == jobs.c.user_id)
        .group_by(keys.c.user_id)
        .having(sa.func.count() == 1)
        .scalar_subquery()
    )
    op.execute(sa.update(jobs).values(api_key_id=sole_key))
    op.execute(sa.update(jobs).where(jobs.c.api_key_id.is_(None)).values(job_token_hash=None))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_api_key_id")
        batch.drop_constraint("fk_jobs_api_key_id", type_="foreignkey")
        batch.drop_column("api_key_id")
