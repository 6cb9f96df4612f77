"""An index for text search (`q`): trigrams of every prediction and of every stored text.

SQLite: FTS5 tables with the trigram tokenizer over `predictions.prediction` and
`prediction_texts.text`, external content (the text is not stored twice; `detail=none`: rowids
only, since every candidate is checked with the LIKE anyway), kept in step by triggers.
PostgreSQL: pg_trgm GIN indexes on the same columns. CREATE EXTENSION needs a superuser (or,
pg_trgm being a trusted extension, CREATE on the database): where the database refuses, the
migration logs it and carries on without the indexes, and searches scan as before.

Revision ID: 0006
Revises: 0005
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

log = logging.getLogger("finetune_lab.server.db")

FTS = {  # FTS table: (content table, its column)
    "predictions_fts": ("predictions", "prediction"),
    "prediction_texts_fts": ("prediction_texts", "text"),
}
PG_INDEXES = {  # index name: (table, column)
    "ix_predictions_prediction_trgm": ("predictions", "prediction"),
    "ix_prediction_texts_text_trgm": ("prediction_texts", "text"),
}


def _sqlite_upgrade() -> None:
    for fts, (content, col) in FTS.items():
        op.execute(
            f"CREATE VIRTUAL TABLE {fts} USING fts5({col}, content='{content}', "
            "content_rowid='id', tokenize='trigram', detail='none', columnsize=0)"
        )
        remove = f"INSERT INTO {fts}({fts}, rowid, {col}) VALUES ('delete', old.id, old.{col});"
        add = f"INSERT INTO {fts}(rowid, {col}) VALUES (new.id, new.{col});"
        op.execute(f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {content} BEGIN {add} END")
        op.execute(f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {content} BEGIN {remove} END")
        op.execute(
            f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {col} ON {content} "
            f"WHEN old.{col} IS NOT new.{col} BEGIN {remove} {add} END"
        )
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def _pg_trgm_ready(bind: sa.engine.Connection) -> bool:
    if bind.scalar(sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")):
        return True
    try:
        with bind.begin_nested():  # a refusal must not abort the migration's transaction
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        log.warning(
            "text search index not created: CREATE EXTENSION pg_trgm failed (%s); searches "
            "scan. A superuser can run CREATE EXTENSION pg_trgm and create the indexes "
            "(see the server's start-up warning)",
            str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
        )
        return False
    return True


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _sqlite_upgrade()
        return
    if _pg_trgm_ready(bind):
        for name, (table, col) in PG_INDEXES.items():
            op.execute(f"CREATE INDEX {name} ON {table} USING gin ({col} gin_trgm_ops)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for fts in FTS:
            for event in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {fts}_{event}")
            op.execute(f"DROP TABLE IF EXISTS {fts}")
        return
    for name in PG_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
