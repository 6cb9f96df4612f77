"""PostgreSQL: the trigram GIN indexes keep a small pending list (256 kB, not the 4 MB default).

With the default, a GIN index queues new entries in a pending list of up to 4 MB and merges
them in bulk; the merged pages stay with the index as free space, so every trigram index
carries about 4 MB it does not use: on a 10,000-prediction job, 500 bytes a prediction against
85 for the same index built at once. At 256 kB the index stays within 40% of a bulk build and
a batch's insert costs about 1.2x the default's in all (the queue is merged more often; turning
it off cost 8x). An index that already grew keeps its free pages until
`REINDEX INDEX CONCURRENTLY` (not run here: on a big table it takes minutes).

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INDEXES = ("ix_predictions_prediction_trgm", "ix_prediction_texts_text_trgm")


def _present(name: str) -> bool:
    """0006 creates the indexes only where the database allowed CREATE EXTENSION pg_trgm."""
    return bool(op.get_bind().exec_driver_sql(f"SELECT to_regclass('{name}') IS NOT NULL").scalar())


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in INDEXES:
        if _present(name):
            op.execute(f"ALTER INDEX {name} SET (gin_pending_list_limit = 256)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in INDEXES:
        if _present(name):
            op.execute(f"ALTER INDEX {name} RESET (gin_pending_list_limit)")
