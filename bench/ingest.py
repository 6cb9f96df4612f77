"""Ingest throughput: SDK over HTTP (batches of 1,000) vs raw inserts of the same rows; and what
a writer at full speed costs a concurrent reader.

Targets (issue 14): HTTP ingest >= 0.2x a lean raw `executemany` into a 12-column SQLite table
(issue 2's, kept: >= 0.25x a raw executemany into the server's own table, >= 20,000/s).

Baselines, both already scored, one transaction per 1,000 rows, WAL mode:
- lean: the 12 columns that matter (keys, texts, four scores, timestamp), no index but the
  rowid: what SQLite alone costs for these bytes;
- same table: the server's `predictions` table (all columns and indexes, built by our
  migrations), texts stored once as the server stores them (migration 0005): each batch's
  distinct prompts and ground truths into `prediction_texts` (keyed by the server's digest;
  those the job has already are skipped), their ids looked up, then the rows with the ids:
  what the database costs with no HTTP, validation, scoring or rollups. The search index: on
  SQLite since 0010 no insert writes it (the server indexes behind a watermark), so this
  baseline holds none; "0009 triggers" is the same table at revision 0009, where FTS5
  triggers indexed every insert (the baseline before 0010). On PostgreSQL the GIN indexes
  (0006) are kept by the database at insert; "no GIN" is the same table without them.
Floors (first, defaults only; `--floors-only` stops there): the lean table plus the upsert
key's unique index, plus each of the server's other `predictions` indexes in turn (read order,
(job, sample), the two text ids), plus all of them; our own tables at 0009 (FTS5 triggers on
insert) and as they are; each printed as a ratio to the lean insert and against HTTP ingest,
all interleaved in one server run. They show what each index costs a raw insert and how far
the server's own table is from the lean one before any HTTP or Python.
Each server setting is measured in its own server: the defaults (cheap batches scored in the
serving process), then the scoring pool forced (`FINETUNE_LAB_SCORING_INLINE_MS=0`) with 1 and
with 2 workers, to show how ingest scales with cores. The raw inserts and HTTP ingest are
interleaved batch by batch and compared by their medians, because this machine's CPU speed
drifts by up to 2x from second to second; timing them one after the other would compare two
different machines.

Every core: the same settings again with `--writers` (default 2) SDK processes ingesting at once,
as a rate against the lean baseline measured right before and after.

Reader: p50/p99 of `/trends` and of the first predictions page, idle and while another process
ingests 1,000-row batches back to back into another job of the same user (defaults, and the
pool with 2 workers).

Where PostgreSQL 15 is installed (`--backend both` or `postgres`) the throughput part is
repeated on it against a raw COPY into the same table; that part has no target.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sqlite3
import statistics
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import httpx
from sqlalchemy.engine import make_url

from _common import postgres_database, prediction_rows, running_server, verdict
from finetune_lab import FinetuneLabClient
from finetune_lab.scoring import score
from finetune_lab.server.db import Database, upgrade
from finetune_lab.server.db.tables import predictions
from finetune_lab.server.services.search import PG_INDEXES
from finetune_lab.server.services.texts import INSERT_CHUNK, LOOKUP_CHUNK, TEXT_FIELDS, digest
from storage import ingest_all, source_tree

BATCH = 1_000
BATCHES = 80
WARMUP = 5
READS = 300  # per reader phase and endpoint
NO_RATE_LIMIT = {"FINETUNE_LAB_RATE_LIMIT": "off"}
SETTINGS: dict[str, dict[str, str]] = {
    "defaults": {},
    "pool, 1 worker": {"FINETUNE_LAB_SCORING_WORKERS": "1", "FINETUNE_LAB_SCORING_INLINE_MS": "0"},
    "pool, 2 workers": {"FINETUNE_LAB_SCORING_WORKERS": "2", "FINETUNE_LAB_SCORING_INLINE_MS": "0"},
}

COLUMNS = [c.name for c in predictions.c if c.name != "id"]
RAW_JOB = "raw"
LEAN_COLUMNS = [
    "job_id",
    "epoch",
    "step",
    "sample_index",
    "prompt",
    "ground_truth",
    "prediction",
    "exact_match",
    "char_error_rate",
    "length_ratio",
    "word_overlap",
    "created_at",
]


@dataclass
class Prepared:
    """A batch ready for the database: row tuples in `columns` order (where the table keeps
    texts once, the text-id columns hold the text's digest until `with_ids`) and the batch's
    distinct texts by digest."""

    rows: list[tuple[Any, ...]]
    texts: dict[bytes, str]
    id_positions: list[int]

    def with_ids(self, ids: dict[bytes, int]) -> list[tuple[Any, ...]]:
        """The rows with each digest replaced by its text's id."""
        if not self.id_positions:
            return self.rows
        out = []
        for row in self.rows:
            values = list(row)
            for position in self.id_positions:
                if values[position] is not None:
                    values[position] = ids[values[position]]
            out.append(tuple(values))
        return out


class RawBaseline(ABC):
    """Pre-scored rows, ready for the database: the part of ingest no server can avoid."""

    columns = COLUMNS
    created_at: Any = "2026-01-01 00:00:00.000000"

    def prepare(self, rows: list[dict[str, Any]]) -> Prepared:
        """Scores and digests, computed before the clock starts (as the HTTP side's rows are
        built before theirs)."""
        id_positions = [self.columns.index(c) for c in TEXT_FIELDS.values() if c in self.columns]
        prepared: list[tuple[Any, ...]] = []
        texts: dict[bytes, str] = {}
        for row in rows:
            exact, cer, ratio, overlap = score(row["prediction"], row["ground_truth"])
            full = {
                **row,
                "job_id": RAW_JOB,
                "user_id": 1,
                "created_at": self.created_at,
                "exact_match": exact,
                "char_error_rate": cer,
                "length_ratio": ratio,
                "word_overlap": overlap,
            }
            if id_positions:
                for field, id_column in TEXT_FIELDS.items():
                    text: str | None = full.get(field)
                    full[id_column] = None
                    if text is not None:
                        full[id_column] = key = digest(text)
                        texts[key] = text
            prepared.append(tuple(full.get(name) for name in self.columns))
        return Prepared(prepared, texts, id_positions)

    @abstractmethod
    def insert(self, prepared: Prepared) -> None: ...


class RawSQLite(RawBaseline):
    """Plain executemany into the server's own tables, WAL mode, one transaction per batch:
    the batch's texts the job lacks, their ids, then the rows."""

    def __init__(self, path: Path, revision: str = "head") -> None:
        db = Database(f"sqlite:///{path}")
        upgrade(db.engine, revision)
        db.dispose()
        self._connect(path)

    def _connect(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        placeholders = ", ".join("?" * len(self.columns))
        self.sql = f"INSERT INTO predictions ({', '.join(self.columns)}) VALUES ({placeholders})"

    def _text_ids(self, texts: dict[bytes, str]) -> dict[bytes, int]:
        """As the server does it: the ids the job has, then the missing texts inserted with
        multi-row VALUES (one statement per chunk: the FTS5 triggers flush once per
        statement; an executemany made them flush per text) returning their ids."""
        keys: list[bytes] = list(texts)
        ids: dict[bytes, int] = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start : start + LOOKUP_CHUNK]
            marks = ", ".join("?" * len(chunk))
            ids.update(
                self.conn.execute(
                    "SELECT digest, id FROM prediction_texts WHERE job_id = ?"
                    f" AND digest IN ({marks})",
                    (RAW_JOB, *chunk),
                )
            )
        missing = [key for key in keys if key not in ids]
        for start in range(0, len(missing), INSERT_CHUNK):
            chunk = missing[start : start + INSERT_CHUNK]
            values = ", ".join("(?, ?, ?)" for _ in chunk)
            params = [value for key in chunk for value in (RAW_JOB, key, texts[key])]
            ids.update(
                self.conn.execute(
                    f"INSERT INTO prediction_texts (job_id, digest, text) VALUES {values}"
                    " RETURNING digest, id",
                    params,
                )
            )
        return ids

    def insert(self, prepared: Prepared) -> None:
        self.conn.execute("BEGIN")
        ids = self._text_ids(prepared.texts) if prepared.id_positions else {}
        self.conn.executemany(self.sql, prepared.with_ids(ids))
        self.conn.execute("COMMIT")


class LeanSQLite(RawSQLite):
    """The same, into a 12-column table with no index but the rowid (texts in the rows)."""

    columns = LEAN_COLUMNS

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        types = {"exact_match": "REAL", "char_error_rate": "REAL", "length_ratio": "REAL"}
        types |= {"word_overlap": "REAL", "epoch": "INTEGER", "step": "INTEGER"}
        types |= {"sample_index": "INTEGER", "prompt_ref": "INTEGER", "truth_ref": "INTEGER"}
        columns = ", ".join(f"{name} {types.get(name, 'TEXT')}" for name in self.columns)
        self.conn.execute(f"CREATE TABLE predictions (id INTEGER PRIMARY KEY, {columns})")
        placeholders = ", ".join("?" * len(self.columns))
        self.sql = f"INSERT INTO predictions ({', '.join(self.columns)}) VALUES ({placeholders})"


class LeanIndexed(LeanSQLite):
    """The lean table plus some of the server's `predictions` indexes (the floor each one sets):
    the upsert key's unique index, and optionally more. `text ids` adds the two integer
    text-id columns of the texts-once layout (a distinct id per distinct text) with their
    indexes."""

    INDEXES: ClassVar[dict[str, str]] = {
        "key": "CREATE UNIQUE INDEX uq ON predictions (job_id, step, sample_index)",
        "read_order": "CREATE INDEX ro ON predictions (job_id, epoch, step, sample_index)",
        "job_sample": "CREATE INDEX js ON predictions (job_id, sample_index)",
        "text ids": "CREATE INDEX pt ON predictions (prompt_ref);"
        " CREATE INDEX tt ON predictions (truth_ref)",
    }

    # The text-id columns.
    REFS: ClassVar[dict[str, str]] = {"prompt": "prompt_ref", "ground_truth": "truth_ref"}

    def __init__(self, path: Path, indexes: tuple[str, ...]) -> None:
        if "text ids" in indexes:
            self.columns = [*LEAN_COLUMNS, *self.REFS.values()]
        super().__init__(path)
        self.text_ids: dict[str, int] = {}
        for name in indexes:
            self.conn.executescript(self.INDEXES[name])

    def prepare(self, rows: list[dict[str, Any]]) -> Prepared:
        if self.REFS["prompt"] not in self.columns:
            return super().prepare(rows)
        with_refs = []
        for row in rows:
            row = dict(row)
            for field, ref in self.REFS.items():
                text = row.get(field)
                known = None if text is None else self.text_ids.get(text)
                if text is not None and known is None:
                    known = self.text_ids[text] = len(self.text_ids) + 1
                row[ref] = known
            with_refs.append(row)
        return super().prepare(with_refs)


class RawPostgres(RawBaseline):
    """COPY into the same table (built by our migrations in a second database), one
    transaction per batch, after the batch's texts the job lacks and their ids."""

    created_at = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __init__(self, database_url: str, *, gin: bool = True) -> None:
        import psycopg

        db = Database(database_url)
        upgrade(db.engine)
        if not gin:
            with db.write() as conn:
                for index in PG_INDEXES:
                    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
        db.dispose()
        self.conn = psycopg.connect(
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self.copy = f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN"

    def insert(self, prepared: Prepared) -> None:
        with self.conn.transaction(), self.conn.cursor() as cursor:
            cursor.execute(
                "SELECT digest, id FROM prediction_texts WHERE job_id = %s AND digest = ANY(%b)",
                (RAW_JOB, list(prepared.texts)),
            )
            ids = {bytes(key): text_id for key, text_id in cursor.fetchall()}
            missing = [key for key in prepared.texts if key not in ids]
            if missing:
                cursor.execute(
                    "INSERT INTO prediction_texts (job_id, digest, text) SELECT %s, d, t"
                    " FROM unnest(%b::bytea[], %b::text[]) AS u(d, t) RETURNING digest, id",
                    (RAW_JOB, missing, [prepared.texts[key] for key in missing]),
                )
                ids.update((bytes(key), text_id) for key, text_id in cursor.fetchall())
            with cursor.copy(self.copy) as copy:
                for values in prepared.with_ids(ids):
                    copy.write_row(values)


def timed(call: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def batches() -> list[list[dict[str, Any]]]:
    return [prediction_rows(step=s, epoch=s // 10, count=BATCH) for s in range(BATCHES + WARMUP)]


def measure(
    server_url: str | None, raws: list[RawBaseline], env: dict[str, str]
) -> list[list[float]]:
    """Per-batch seconds of each raw baseline and of SDK ingest (last), alternated batch by
    batch."""
    data = batches()
    times: list[list[float]] = [[] for _ in range(len(raws) + 1)]
    with (
        running_server(server_url, env={**NO_RATE_LIMIT, **env}) as server,
        FinetuneLabClient(api_key=server.key, base_url=server.url) as client,
    ):
        job = client.jobs.create(name="bench-ingest")
        for index, rows in enumerate(data):
            took = [timed(raw.insert, raw.prepare(rows)) for raw in raws]
            took.append(timed(client.training_predictions.create, job.id, rows))
            if index >= WARMUP:
                for series, seconds in zip(times, took, strict=True):
                    series.append(seconds)
        stored = client.training_predictions.get(job.id, limit=1).total_count
        assert stored == BATCH * (BATCHES + WARMUP), stored
    return times


def rate(times: list[float]) -> float:
    return BATCH / statistics.median(times)


def spread(times: list[float]) -> str:
    q1, q2, q3 = statistics.quantiles(times, n=4)
    return f"p25 {q1 * 1e3:6.2f}  p50 {q2 * 1e3:6.2f}  p75 {q3 * 1e3:6.2f}"


FLOORS: dict[str, tuple[str, ...]] = {
    "lean + key": ("key",),
    "lean + key + read_order": ("key", "read_order"),
    "lean + key + job_sample": ("key", "job_sample"),
    "lean + key + text ids": ("key", "text ids"),
    "lean + all our indexes": ("key", "read_order", "job_sample", "text ids"),
}


def sqlite_floors() -> None:
    """What each index costs a raw insert, beside our table with and without the search
    triggers and HTTP ingest (defaults): rates as ratios to the lean insert."""
    with tempfile.TemporaryDirectory() as tmp:
        raws: dict[str, RawBaseline] = {"lean": LeanSQLite(Path(tmp) / "lean.db")}
        for index, (name, indexes) in enumerate(FLOORS.items()):
            raws[name] = LeanIndexed(Path(tmp) / f"floor{index}.db", indexes)
        raws["same table at 0009 (FTS5 triggers)"] = RawSQLite(Path(tmp) / "r0009.db", "0009")
        raws["same table"] = RawSQLite(Path(tmp) / "raw.db")
        *raw_t, http_t = measure(None, list(raws.values()), {})
    rates = {name: rate(times) for name, times in zip(raws, raw_t, strict=True)}
    rates["SDK over HTTP"] = rate(http_t)
    print(f"floors (SQLite): {BATCHES} batches x {BATCH}, interleaved, medians")
    for name, value in rates.items():
        print(
            f"  {name:32}: {value:10,.0f} predictions/s = {value / rates['lean']:5.2f}x lean; "
            f"HTTP / this {rates['SDK over HTTP'] / value:5.2f}x"
        )


def sqlite_throughput() -> dict[str, float]:
    """Ratios of HTTP ingest to the lean baseline, per server setting."""
    ratios = {}
    for name, env in SETTINGS.items():
        with tempfile.TemporaryDirectory() as tmp:
            lean = LeanSQLite(Path(tmp) / "lean.db")
            same = RawSQLite(Path(tmp) / "raw.db")
            old = RawSQLite(Path(tmp) / "raw0009.db", revision="0009")
            lean_t, same_t, old_t, http_t = measure(None, [lean, same, old], env)
        print(f"ingest (SQLite, {name}): {BATCHES} batches x {BATCH}, interleaved, medians")
        for label, times in (("lean", lean_t), ("same", same_t), ("0009", old_t), ("http", http_t)):
            print(f"  {label:4} batch ms: {spread(times)}")
        print(f"  raw executemany, lean 12 columns : {rate(lean_t):10,.0f} predictions/s")
        print(f"  raw executemany, same table      : {rate(same_t):10,.0f} predictions/s")
        print(f"  same, 0009 triggers (FTS5 insert): {rate(old_t):10,.0f} predictions/s")
        print(f"  SDK over HTTP                    : {rate(http_t):10,.0f} predictions/s")
        print(f"  ratio same/0009 triggers: {rate(same_t) / rate(old_t):5.2f}x")
        ratios[name] = lean_ratio = rate(http_t) / rate(lean_t)
        same_ratio = rate(http_t) / rate(same_t)
        lean_ok, same_ok = verdict(lean_ratio >= 0.2), verdict(same_ratio >= 0.25)
        print(f"  ratio HTTP/lean  : {lean_ratio:5.2f}x  target >= 0.20  {lean_ok}")
        print(f"  ratio HTTP/same  : {same_ratio:5.2f}x  target >= 0.25  {same_ok}")
        absolute_ok = verdict(rate(http_t) >= 20_000)
        print(f"  absolute         : {rate(http_t):,.0f}/s  target >= 20,000  {absolute_ok}")
    return ratios


def postgres_throughput() -> None:
    with postgres_database() as server_db, postgres_database() as raw_db:
        if server_db is None or raw_db is None:
            print("ingest (PostgreSQL): skipped, PostgreSQL 15 binaries not found")
            return
        with postgres_database() as bare_db:
            assert bare_db is not None
            raws: list[RawBaseline] = [RawPostgres(raw_db), RawPostgres(bare_db, gin=False)]
            raw_t, bare_t, http_t = measure(server_db, raws, {})
    print(f"ingest (PostgreSQL, defaults): {BATCHES} batches x {BATCH}, interleaved, medians")
    print(f"  raw COPY        : {rate(raw_t):10,.0f} predictions/s  ({spread(raw_t)} ms)")
    print(f"  raw COPY, no GIN: {rate(bare_t):10,.0f} predictions/s  ({spread(bare_t)} ms)")
    print(f"  SDK over HTTP   : {rate(http_t):10,.0f} predictions/s  ({spread(http_t)} ms)")
    print(f"  ratio HTTP/raw: {rate(http_t) / rate(raw_t):5.2f}x  (no target)")
    print(f"  ratio raw with GIN / without: {rate(raw_t) / rate(bare_t):5.2f}x")


def against(revision: str, backend: str) -> None:
    """HTTP ingest of this tree vs a server running `revision`'s code, the same batches
    interleaved (these rows are the text store's worst case: every prompt and truth new)."""

    def run(name: str, urls: list[str]) -> None:
        data = batches()
        with source_tree(revision) as old_src, contextlib.ExitStack() as stack:
            servers = {
                "then": stack.enter_context(running_server(urls[0], NO_RATE_LIMIT, src=old_src)),
                "now": stack.enter_context(running_server(urls[1], NO_RATE_LIMIT)),
            }
            times = ingest_all(servers, data)
        rates = {label: rate(values[WARMUP:]) for label, values in times.items()}
        print(
            f"ingest ({name}, defaults) vs {revision}: {rates['now']:,.0f}/s vs "
            f"{rates['then']:,.0f}/s = {rates['now'] / rates['then']:.2f}x "
            f"({BATCHES} interleaved batches of {BATCH}, medians)"
        )

    if backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run("SQLite", [f"sqlite:///{tmp}/then.db", f"sqlite:///{tmp}/now.db"])
    if backend in ("postgres", "both"):
        with postgres_database() as then_db, postgres_database() as now_db:
            if then_db is not None and now_db is not None:
                run("PostgreSQL", [then_db, now_db])


def _burst(url: str, key: str, job_id: str, ready: Any, start: Any, count: int) -> None:
    """A process that sends `count` 1,000-row batches back to back once `start` is set."""
    data = [prediction_rows(step, step // 10, BATCH) for step in range(count)]
    with FinetuneLabClient(api_key=key, base_url=url) as client:
        ready.release()
        start.wait()
        for rows in data:
            client.training_predictions.create(job_id, rows)


def concurrent_rates(writers: int, count: int) -> dict[str, float]:
    """Predictions/s of `writers` SDK processes ingesting at once, per server setting, as a
    ratio to the lean baseline's median rate measured right before and after."""
    ratios = {}
    context = multiprocessing.get_context("spawn")
    for name, env in SETTINGS.items():
        with tempfile.TemporaryDirectory() as tmp:
            lean = LeanSQLite(Path(tmp) / "lean.db")
            data = batches()[:count]
            lean_t = [timed(lean.insert, lean.prepare(rows)) for rows in data]
            with running_server(None, env={**NO_RATE_LIMIT, **env}) as server:
                ready, start = context.Semaphore(0), context.Event()
                processes = []
                for index in range(writers):
                    job_id = f"w{index}"
                    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}) as h:
                        h.post("/api/training/jobs", json={"id": job_id}).raise_for_status()
                    args = (server.url, server.key, job_id, ready, start, count)
                    processes.append(context.Process(target=_burst, args=args))
                    processes[-1].start()
                for _ in processes:
                    ready.acquire()
                started = time.perf_counter()
                start.set()
                for process in processes:
                    process.join()
                elapsed = time.perf_counter() - started
            lean_t += [timed(lean.insert, lean.prepare(rows)) for rows in data]
        http_rate = writers * count * BATCH / elapsed
        ratios[name] = http_rate / rate(lean_t)
        print(
            f"ingest (SQLite, {name}, {writers} writers at once): {http_rate:9,.0f} predictions/s"
            f" = {ratios[name]:4.2f}x lean ({rate(lean_t):,.0f}/s)"
        )
    return ratios


def _writer(url: str, key: str, job_id: str, stop: Any, sent: Any) -> None:
    """A process that ingests 1,000-row batches back to back until told to stop."""
    with FinetuneLabClient(api_key=key, base_url=url) as client:
        step = 0
        while not stop.is_set():
            client.training_predictions.create(job_id, prediction_rows(step, step // 10, BATCH))
            step += 1
            sent.value = step * BATCH


def _read_times(http: httpx.Client, path: str, params: dict[str, Any]) -> list[float]:
    times = []
    for _ in range(READS):
        started = time.perf_counter()
        http.get(path, params=params).raise_for_status()
        times.append(time.perf_counter() - started)
    return times


def reader_latency(setting: str) -> None:
    """Reader p50/p99 idle vs during a full-speed writer; the writer runs in its own process
    (its client threads must not share a GIL with the reader's)."""
    with running_server(None, env={**NO_RATE_LIMIT, **SETTINGS[setting]}) as server:
        headers = {"X-API-Key": server.key}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            for job_id in ("read", "write"):
                http.post("/api/training/jobs", json={"id": job_id}).raise_for_status()
            with FinetuneLabClient(api_key=server.key, base_url=server.url) as client:
                for step in range(50):  # 50 rounds of 1,000
                    client.training_predictions.create("read", prediction_rows(step, step, BATCH))
            reads = {
                "/trends": ("/api/training/predictions/read/trends", {}),
                "page": ("/api/training/predictions/read", {"limit": 50}),
            }
            idle = {name: _read_times(http, *call) for name, call in reads.items()}
            context = multiprocessing.get_context("spawn")
            stop, sent = context.Event(), context.Value("q", 0)
            args = (server.url, server.key, "write", stop, sent)
            writer = context.Process(target=_writer, args=args)
            writer.start()
            while sent.value < 5 * BATCH:  # the writer is up and ingesting
                time.sleep(0.05)
            started, before = time.perf_counter(), sent.value
            busy = {name: _read_times(http, *call) for name, call in reads.items()}
            written = (sent.value - before) / (time.perf_counter() - started)
            stop.set()
            writer.join(timeout=60)
    print(f"reader while a writer ingests (SQLite, {setting}; writer {written:,.0f} predictions/s)")
    for name in reads:
        p50_idle, p99_idle = _p50_p99(idle[name])
        p50_busy, p99_busy = _p50_p99(busy[name])
        print(
            f"  {name:7} idle p50 {p50_idle:6.1f} p99 {p99_idle:6.1f} ms | "
            f"writing p50 {p50_busy:6.1f} p99 {p99_busy:6.1f} ms | "
            f"p99 ratio {p99_busy / p99_idle:5.1f}x"
        )


def _p50_p99(times: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(times, n=100)
    return cuts[49] * 1e3, cuts[98] * 1e3


def main() -> None:
    global BATCHES  # --batches: the functions above read it
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--writers", type=int, default=2, help="SDK processes at once")
    parser.add_argument("--skip-reader", action="store_true")
    parser.add_argument(
        "--floors-only", action="store_true", help="only the per-index floors (SQLite)"
    )
    parser.add_argument(
        "--against", metavar="REV", help="only: HTTP ingest vs a server at git revision REV"
    )
    parser.add_argument(
        "--batches", type=int, default=BATCHES, help=f"measured batches per setting ({BATCHES})"
    )
    args = parser.parse_args()
    BATCHES = args.batches
    if args.against:
        against(args.against, args.backend)
        return
    if args.backend in ("sqlite", "both"):
        sqlite_floors()
    if args.floors_only:
        return
    if args.backend in ("sqlite", "both"):
        ratios = sqlite_throughput()
        one, two = ratios["pool, 1 worker"], ratios["pool, 2 workers"]
        print(f"one writer, pool forced: 2 workers / 1 worker = {two / one:4.2f}x")
        ratios = concurrent_rates(args.writers, BATCHES // args.writers)
        one, two = ratios["pool, 1 worker"], ratios["pool, 2 workers"]
        print(f"{args.writers} writers, pool forced: 2 workers / 1 worker = {two / one:4.2f}x")
        if not args.skip_reader:
            for setting in ("defaults", "pool, 2 workers"):
                reader_latency(setting)
    if args.backend in ("postgres", "both"):
        postgres_throughput()


if __name__ == "__main__":
    main()
