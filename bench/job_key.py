"""What an integer job key would give PostgreSQL's disk (issue 14; measured, not built).

`predictions` repeats the 36-character job id in every row and leads three indexes with it
(the upsert key, the read order, the matrix's). This bench ingests `bench/storage.py`'s job
(200 samples x 50 rounds, 1,500-character prompts) through the SDK into a server on
PostgreSQL, after a warm-up job of 2 batches, then replays the server's own rows, batch by
batch in the order they were stored, into copies of `predictions` (same columns and b-tree
indexes; the `pg_trgm` index is left out, it is the same in every copy):

- string key, the new job's id sorts after the warm-up job's: every insert at the right edge
  of the indexes led by the job id (PostgreSQL packs those pages 90% full);
- string key, the new job's id sorts first: its inserts land inside the index, whose pages
  split 50/50 (random `job_<uuid>` ids do this for about half of all jobs);
- integer key (a number per job, newer jobs higher): 8 bytes instead of 37; and the same for
  a job written after a newer job exists (its inserts inside the index, as above);
- integer key without `ix_predictions_read_order`.

Each copy's growth during the job is added to what the rest of the server's database grew by
(texts, rollups, stream, the search index), and is printed as a ratio to the text sent
(target: <= 0.4x).
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from _common import postgres_database, running_server
from finetune_lab.server.db.tables import predictions
from storage import ingest_all, job_batches, postgres_size, text_chars

COLUMNS = [c.name for c in predictions.c]
VARIANTS: dict[str, dict[str, Any]] = {
    "string key, new job sorts last": {"keys": ("job_" + "a" * 32, "job_" + "b" * 32)},
    "string key, new job sorts first": {"keys": ("job_" + "b" * 32, "job_" + "a" * 32)},
    "integer key": {"keys": (1, 2), "integer": True},
    "integer key, a job older than another": {"keys": (2, 1), "integer": True},
    "integer key, no read_order index": {"keys": (1, 2), "integer": True, "drop": True},
}


def sizes(conn: psycopg.Connection[Any], table: str) -> dict[str, int]:
    """Heap (with TOAST) and each index of `table`, after a VACUUM."""
    conn.execute(f"VACUUM ANALYZE {table}")
    rows = conn.execute(
        "SELECT c.relname, CASE c.relkind WHEN 'r' THEN pg_table_size(c.oid) "
        "ELSE pg_relation_size(c.oid) END FROM pg_class c WHERE c.oid = %s::regclass "
        "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass)",
        (table, table),
    ).fetchall()
    return {name: int(size) for name, size in rows}


def make_copy(conn: psycopg.Connection[Any], name: str, variant: dict[str, Any]) -> None:
    conn.execute(f"CREATE TABLE {name} (LIKE predictions INCLUDING INDEXES)")
    for (index,) in conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = %s AND "
        "(indexdef LIKE '%%gin%%' OR (%s AND indexdef LIKE '%%(job_id, epoch, step,%%'))",
        (name, bool(variant.get("drop"))),
    ).fetchall():
        conn.execute(f"DROP INDEX {index}")
    if variant.get("integer"):
        conn.execute(f"ALTER TABLE {name} ALTER COLUMN job_id TYPE bigint USING NULL")


def replay(conn: psycopg.Connection[Any], name: str, job_id: str, key: Any) -> None:
    """The job's rows in stored order, 1,000 a statement (as ingest wrote them)."""
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM predictions WHERE job_id = %s ORDER BY id", (job_id,)
        )
    ]
    select = ", ".join("%s" if column == "job_id" else column for column in COLUMNS)
    for start in range(0, len(ids), 1_000):
        chunk = ids[start : start + 1_000]
        conn.execute(
            f"INSERT INTO {name} ({', '.join(COLUMNS)}) SELECT {select} FROM predictions "
            "WHERE id BETWEEN %s AND %s AND job_id = %s ORDER BY id",
            (key, chunk[0], chunk[-1], job_id),
        )


def main() -> None:
    batches = job_batches()
    sent = text_chars(batches)
    with postgres_database() as url:
        if url is None:
            print("PostgreSQL: not installed, skipped")
            return
        libpq = make_url(url).set(drivername="postgresql").render_as_string(False)
        with running_server(url) as server, psycopg.connect(libpq, autocommit=True) as conn:
            ingest_all({"s": server}, batches[:2])
            before = postgres_size(url)[1]
            ingest_all({"s": server}, batches)
            after = postgres_size(url)[1]
            warm, job = [row[0] for row in conn.execute("SELECT id FROM jobs ORDER BY created_at")]
            rest = sum(
                size - before.get(name, 0)
                for name, size in after.items()
                if name not in sizes(conn, "predictions") or "trgm" in name
            )
            as_is = sum(after.values()) - sum(before.values())
            print(
                f"PostgreSQL, {sent / 1e6:.1f} MB of text sent: the server as is "
                f"{as_is / 1e6:.2f} MB = {as_is / sent:.3f}x (job ids as they came)"
            )
            print(f"  the rest (texts, rollups, stream, search index): {rest / 1e6:.2f} MB")
            for number, (label, variant) in enumerate(VARIANTS.items()):
                name = f"copy{number}"
                make_copy(conn, name, variant)
                replay(conn, name, warm, variant["keys"][0])
                grown = sizes(conn, name)
                replay(conn, name, job, variant["keys"][1])
                parts = {k: v - grown[k] for k, v in sizes(conn, name).items()}
                total = rest + sum(parts.values())
                detail = ", ".join(
                    f"{k.removeprefix(name + '_')} {v / 1e6:.2f}" for k, v in parts.items()
                )
                print(
                    f"  {label:38}: {total / 1e6:5.2f} MB = {total / sent:.3f}x  "
                    f"(predictions: {detail} MB)"
                )


if __name__ == "__main__":
    main()
