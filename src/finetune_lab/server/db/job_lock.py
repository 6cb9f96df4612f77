"""One writer per job at a time, on PostgreSQL as SQLite's single write lock gives for free.

Ingest, grading and deletion of a job take it first thing in their transaction: rollups are
refreshed against every committed row, and a deletion cannot run between an ingest's check that
the job exists and its commit (which left that ingest's rows behind a deleted job).
"""

from sqlalchemy import Connection, text


def lock_job(conn: Connection, job_id: str) -> None:
    """Held until the transaction ends; a no-op on SQLite, whose writers already take turns."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:job_id, 0))"),
            {"job_id": job_id},
        )
