"""The text-search index leaves the ingest path (SQLite): rows are indexed later, by the server.

Before, an FTS5 trigger indexed every inserted row inside the ingest transaction, which made a
raw insert into the server's tables about 4x slower. Now each FTS5 table has a watermark
(`search_watermarks`): every row with an id at or below it is in the index, and no row above
it is. Ingest inserts no index entries; the server's indexer (services/search_indexer.py)
indexes the rows above the watermark in small transactions and moves the watermark in the
same transaction (compare-and-set). A search reads the index up to the watermark and scans
the rows above it, so it stays exact.

Deletes and updates of rows at or below the watermark keep the index exact through triggers
(removing an entry the index lacks would corrupt an external-content FTS5 table, hence the
condition). SQLite gives a new row the largest id + 1, so deleting the newest rows would let
their ids come back below the watermark: the delete trigger lowers the watermark to the
largest id left whenever a row above all the others goes, which keeps "above the watermark =
not indexed" true without AUTOINCREMENT (and without rebuilding the tables).

Existing rows were indexed by 0006's triggers: the watermarks start at each table's largest
id. Downgrade indexes the rows above the watermark and puts 0006's triggers back.

PostgreSQL is unchanged: its pg_trgm GIN indexes (fastupdate, the default) already defer most
of the work to a pending list, and its sequences hand out ids out of commit order, which a
watermark could not follow.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FTS = {  # FTS table: (content table, its column), as in 0006
    "predictions_fts": ("predictions", "prediction"),
    "prediction_texts_fts": ("prediction_texts", "text"),
}
WATERMARKS = "search_watermarks"


def _watermark(content: str) -> str:
    return f"(SELECT watermark FROM {WATERMARKS} WHERE source = '{content}')"


def _largest_id(content: str) -> str:
    return f"coalesce((SELECT max(id) FROM {content}), 0)"


def _sqlite_upgrade() -> None:
    op.execute(
        f"CREATE TABLE {WATERMARKS} (source VARCHAR(64) NOT NULL PRIMARY KEY, "
        "watermark BIGINT NOT NULL)"
    )
    for fts, (content, col) in FTS.items():
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {fts}_{event}")
        op.execute(
            f"INSERT INTO {WATERMARKS} (source, watermark) VALUES ('{content}', "
            f"{_largest_id(content)})"
        )
        indexed = f"old.id <= {_watermark(content)}"
        # One trigger, in this order: the entry goes while the row is still below the mark.
        op.execute(
            f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {content} BEGIN "
            f"INSERT INTO {fts}({fts}, rowid, {col}) SELECT 'delete', old.id, old.{col} "
            f"WHERE {indexed}; "
            f"UPDATE {WATERMARKS} SET watermark = {_largest_id(content)} "
            f"WHERE source = '{content}' AND watermark > {_largest_id(content)}; END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {col} ON {content} "
            f"WHEN old.{col} IS NOT new.{col} AND {indexed} BEGIN "
            f"INSERT INTO {fts}({fts}, rowid, {col}) VALUES ('delete', old.id, old.{col}); "
            f"INSERT INTO {fts}(rowid, {col}) VALUES (new.id, new.{col}); END"
        )


def _sqlite_downgrade() -> None:
    for fts, (content, col) in FTS.items():
        op.execute(
            f"INSERT INTO {fts}(rowid, {col}) SELECT id, {col} FROM {content} "
            f"WHERE id > {_watermark(content)}"
        )
        for event in ("delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {fts}_{event}")
        # 0006's triggers, as it created them.
        remove = f"INSERT INTO {fts}({fts}, rowid, {col}) VALUES ('delete', old.id, old.{col});"
        add = f"INSERT INTO {fts}(rowid, {col}) VALUES (new.id, new.{col});"
        op.execute(f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {content} BEGIN {add} END")
        op.execute(f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {content} BEGIN {remove} END")
        op.execute(
            f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {col} ON {content} "
            f"WHEN old.{col} IS NOT new.{col} BEGIN {remove} {add} END"
        )
    op.execute(f"DROP TABLE {WATERMARKS}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_downgrade()
