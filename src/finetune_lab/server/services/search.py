"""`q`: the rows whose prompt, prediction or ground truth contains a text, case-insensitively.

What matches is defined by the scan: `ILIKE '%q%'` with `%`, `_` and `\\` taken literally (on
SQLite, `lower(x) LIKE lower(q)`: ASCII letters fold; on PostgreSQL the database's locale
folds). Predictions are matched row by row; prompts and ground truths on the job's distinct
texts (services/texts.py), then the rows that use those.

Migration 0006 adds an index over both (SQLite: FTS5 trigram tables; PostgreSQL: pg_trgm GIN
indexes). The index only proposes candidates and every candidate is checked with the scan's own
predicate, so an indexed search returns exactly what the scan returns:

- SQLite: FTS5 matches rows holding every trigram of `q`, case-folded per character (a superset
  of what the ASCII-folding LIKE accepts); then the LIKE. Since 0010 the FTS5 tables hold the
  rows up to a watermark (services/search_indexer.py brings them up to date after ingest): the
  rows above it are scanned, read by id range (only the rows not indexed yet), so a search
  right after an ingest finds its rows too.
- PostgreSQL: ILIKE itself is the indexed operator (the planner picks the GIN index when it is
  cheaper; pg_trgm rechecks each row).

A trigram index has nothing to offer a `q` of one or two characters: such a search scans, and
only where the rows it must read (the job's, or its `epoch`/`step`'s, counted from the
rollups) are at most `scan_max_rows`; beyond that it is refused (422) with what to narrow. So
no request scans more than that many rows. Without an index (PostgreSQL without pg_trgm, or
`FINETUNE_LAB_SEARCH_INDEX=off`) every search scans, unbounded, as before 0006.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    String,
    and_,
    column,
    func,
    or_,
    select,
    table,
    union,
    union_all,
)
from sqlalchemy.engine import Engine

from finetune_lab.server.db.tables import prediction_texts, predictions, round_rollups
from finetune_lab.server.errors import validation_error

log = logging.getLogger("finetune_lab.server.search")

TRIGRAM = 3
PREDICTIONS_FTS = table("predictions_fts", column("rowid", Integer), column("predictions_fts"))
TEXTS_FTS = table("prediction_texts_fts", column("rowid", Integer), column("prediction_texts_fts"))
PG_INDEXES = ("ix_predictions_prediction_trgm", "ix_prediction_texts_text_trgm")
WATERMARKS = table("search_watermarks", column("source", String), column("watermark", Integer))


@dataclass
class SearchSettings:
    enabled: bool = True  # FINETUNE_LAB_SEARCH_INDEX: off = always the scan
    scan_max_rows: int = 100_000  # FINETUNE_LAB_SEARCH_SCAN_MAX_ROWS
    indexed: bool | None = None  # the index exists (found on first use)


_SETTINGS: weakref.WeakKeyDictionary[Engine, SearchSettings] = weakref.WeakKeyDictionary()


def _index_present(conn: Connection) -> bool:
    names: tuple[str, ...]
    if conn.dialect.name == "sqlite":
        names = ("predictions_fts", "prediction_texts_fts", "search_watermarks")
        catalog, name_column = "sqlite_master", "name"
    else:
        names, catalog, name_column = PG_INDEXES, "pg_indexes", "indexname"
    found = conn.scalar(
        select(func.count())
        .select_from(table(catalog, column(name_column)))
        .where(column(name_column).in_(names))
    )
    return found == len(names)


def _settings(conn: Connection) -> SearchSettings:
    settings = _SETTINGS.setdefault(conn.engine, SearchSettings())
    if settings.indexed is None:
        settings.indexed = _index_present(conn)
    return settings


def configure(engine: Engine, *, enabled: bool, scan_max_rows: int) -> None:
    """At server start: record the settings, look for the index, say when searches scan."""
    settings = SearchSettings(enabled=enabled, scan_max_rows=scan_max_rows)
    with engine.connect() as conn:
        settings.indexed = _index_present(conn)
    _SETTINGS[engine] = settings
    if not enabled:
        log.info("text search (q) scans: FINETUNE_LAB_SEARCH_INDEX is off")
    elif not settings.indexed and engine.dialect.name == "sqlite":
        log.warning("text search (q) scans: the FTS5 tables of migrations 0006/0010 are missing")
    elif not settings.indexed:
        log.warning(
            "text search (q) scans every row of a job: the pg_trgm indexes are missing (the "
            "database refused CREATE EXTENSION pg_trgm when migration 0006 ran). As a "
            "superuser: CREATE EXTENSION pg_trgm; then CREATE INDEX %s ON predictions USING "
            "gin (prediction gin_trgm_ops) WITH (gin_pending_list_limit = 256); CREATE INDEX "
            "%s ON prediction_texts USING gin (text gin_trgm_ops) WITH "
            "(gin_pending_list_limit = 256); and restart the server",
            *PG_INDEXES,
        )


def like_pattern(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _ilike(expr: ColumnElement[str], pattern: str) -> ColumnElement[bool]:
    return expr.ilike(pattern, escape="\\")


def fts_query(q: str) -> str:
    """An FTS5 query for rows holding every trigram of `q` (each one quoted: no operators)."""
    trigrams = dict.fromkeys(q[i : i + TRIGRAM] for i in range(len(q) - TRIGRAM + 1))
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in trigrams)


def _watermark(source: str) -> ColumnElement[int]:
    """SQLite: the largest id the FTS5 table of `source` covers (read in the query itself, so
    in the query's snapshot)."""
    w = WATERMARKS.c
    return select(w.watermark).where(w.source == source).scalar_subquery()


def uses_index(conn: Connection, q: str) -> bool:
    settings = _settings(conn)
    return bool(settings.enabled and settings.indexed and len(q) >= TRIGRAM)


def job_clause(conn: Connection, job_id: str, q: str | None) -> ColumnElement[bool]:
    """`job_id = ...`, which an indexed search writes so that no index can serve it: the hits
    must drive the query (else SQLite walks the whole job in read order, testing every row
    against the hits, which is the scan again)."""
    p = predictions.c
    if q and uses_index(conn, q):
        return (p.job_id + "") == job_id
    return p.job_id == job_id


def clause(conn: Connection, job_id: str, q: str) -> ColumnElement[bool]:
    """The WHERE clause for `q` on `predictions` (with the caller's `job_id = ...`)."""
    pattern = like_pattern(q)
    t, p = prediction_texts.c, predictions.c
    if not uses_index(conn, q):
        texts = select(t.id).where(t.job_id == job_id, _ilike(t.text, pattern))
        return or_(
            _ilike(p.prediction, pattern),
            p.prompt_text_id.in_(texts),
            p.truth_text_id.in_(texts),
        )
    hit = predictions.alias("hit")
    if conn.dialect.name == "sqlite":
        match = fts_query(q)
        candidates = select(TEXTS_FTS.c.rowid).where(
            TEXTS_FTS.c.prediction_texts_fts.op("MATCH")(match)
        )
        # `job_id || ''` in the tails: no index on job_id may serve them, only the id range.
        texts_cte = union_all(
            select(t.id).where(t.id.in_(candidates), t.job_id == job_id, _ilike(t.text, pattern)),
            select(t.id).where(
                t.id > _watermark("prediction_texts"),
                (t.job_id + "") == job_id,
                _ilike(t.text, pattern),
            ),
        ).cte("text_hits")
        by_prediction = [
            select(PREDICTIONS_FTS.c.rowid.label("id")).where(
                PREDICTIONS_FTS.c.predictions_fts.op("MATCH")(match)
            ),
            select(hit.c.id).where(
                hit.c.id > _watermark("predictions"),
                (hit.c.job_id + "") == job_id,
                _ilike(hit.c.prediction, pattern),
            ),
        ]
    else:
        texts_cte = (
            select(t.id)
            .where(t.job_id == job_id, _ilike(t.text, pattern))
            .cte("text_hits")
            .prefix_with("MATERIALIZED")
        )
        by_prediction = [
            select(hit.c.id).where(hit.c.job_id == job_id, _ilike(hit.c.prediction, pattern))
        ]
    text_ids = select(texts_cte.c.id)
    hits = union(
        *by_prediction,
        select(hit.c.id).where(hit.c.prompt_text_id.in_(text_ids)),
        select(hit.c.id).where(hit.c.truth_text_id.in_(text_ids)),
    ).cte("hits")
    if conn.dialect.name != "sqlite":
        hits = hits.prefix_with("MATERIALIZED")
    return and_(
        p.id.in_(select(hits.c.id)),
        or_(
            _ilike(p.prediction, pattern),
            p.prompt_text_id.in_(text_ids),
            p.truth_text_id.in_(text_ids),
        ),
    )


def check_scan_bound(
    conn: Connection, job_id: str, q: str, epoch: int | None, step: int | None
) -> None:
    """A short `q` scans: refuse it (422) where the rows to read exceed `scan_max_rows`."""
    settings = _settings(conn)
    if not (settings.enabled and settings.indexed) or len(q) >= TRIGRAM:
        return
    r = round_rollups.c
    query = select(func.coalesce(func.sum(r.sample_count), 0)).where(r.job_id == job_id)
    if epoch is not None:
        query = query.where(r.epoch == epoch)
    if step is not None:
        query = query.where(r.step == step)
    rows = int(conn.scalar(query) or 0)
    if rows > settings.scan_max_rows:
        raise validation_error(
            f"q of fewer than {TRIGRAM} characters is matched by reading every row, and this "
            f"search would read {rows} (at most {settings.scan_max_rows}): search for "
            f"{TRIGRAM} or more characters, or narrow it with epoch or step",
            [
                {
                    "loc": ["query", "q"],
                    "message": "too short for this many rows",
                    "type": "value_error",
                }
            ],
        )
