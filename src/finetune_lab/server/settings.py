"""Every FINETUNE_LAB_* setting of the server, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from finetune_lab.paths import home_dir
from finetune_lab.schema import MAX_BODY_BYTES

if TYPE_CHECKING:  # the pool imports the scoring stack: only the server needs it
    from finetune_lab.server.services.scoring_pool import PoolSettings


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_database_url() -> str:
    return (
        os.environ.get("FINETUNE_LAB_DATABASE_URL") or f"sqlite:///{home_dir() / 'finetune-lab.db'}"
    )


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default_factory=default_database_url)
    max_body_bytes: int = MAX_BODY_BYTES
    # Requests per API key (its sessions and job tokens included) in the `limits` notation
    # ("1200/minute", "20/second;1000/minute"); "off" disables it.
    rate_limit: str = field(
        default_factory=lambda: os.environ.get("FINETUNE_LAB_RATE_LIMIT", "1200/minute")
    )
    # Where the windows are counted: memory:// (this process) or redis://host:port/db (one
    # budget shared by every server process using that Redis).
    rate_limit_storage: str = field(
        default_factory=lambda: os.environ.get("FINETUNE_LAB_RATE_LIMIT_STORAGE", "memory://")
    )
    # Origins allowed to call the API from a browser (comma-separated); none by default.
    cors_origins: tuple[str, ...] = field(
        default_factory=lambda: tuple(
            o.strip()
            for o in os.environ.get("FINETUNE_LAB_CORS_ORIGINS", "").split(",")
            if o.strip()
        )
    )
    # PostgreSQL connections per server process; several processes share one database.
    pool_size: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_POOL_SIZE", "10"))
    )
    # Batch tests: a run's lease (a dead process's runs are taken over after it), how often
    # idle workers look for queued runs, and how many runs one process executes at once.
    batch_lease_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_BATCH_LEASE_S", "30"))
    )
    batch_poll_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_BATCH_POLL_S", "1"))
    )
    batch_parallel_runs: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_BATCH_RUNS", "2"))
    )
    # Judges (model-graded scores): grading runs one process executes at once, rows graded at
    # once per run, calls per (row, judge) before its failure is recorded, the first retry's
    # pause (doubling after), and the judge's answer length in tokens.
    judge_parallel_runs: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_JUDGE_RUNS", "2"))
    )
    judge_concurrency: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_JUDGE_CONCURRENCY", "4"))
    )
    judge_attempts: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_JUDGE_ATTEMPTS", "3"))
    )
    judge_backoff_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_JUDGE_BACKOFF_S", "1"))
    )
    judge_max_tokens: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_JUDGE_MAX_TOKENS", "256"))
    )
    # Local checkpoints kept loaded (least recently used ones are dropped).
    model_cache_size: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_MODEL_CACHE_SIZE", "2"))
    )
    # SSE stream: a heartbeat after this many idle seconds; a re-read of the job's events at
    # least this often even without a wake-up (the safety net under NOTIFY).
    stream_heartbeat_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_STREAM_HEARTBEAT_S", "15"))
    )
    stream_poll_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_STREAM_POLL_S", "5"))
    )
    # Ingest scores and validates rows in this many worker processes (0: in the serving
    # process, without time budgets). Validation time budgets: per row, per batch (seconds
    # of worker time), and for checking a job's JSON Schema at creation.
    scoring_workers: int = field(
        default_factory=lambda: int(
            os.environ.get("FINETUNE_LAB_SCORING_WORKERS", str(default_workers()))
        )
    )
    validation_row_budget_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_VALIDATION_ROW_BUDGET_S", "1"))
    )
    validation_batch_budget_s: float = field(
        default_factory=lambda: float(
            os.environ.get("FINETUNE_LAB_VALIDATION_BATCH_BUDGET_S", "10")
        )
    )
    schema_check_budget_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_SCHEMA_CHECK_BUDGET_S", "10"))
    )

    # Batches without a JSON Schema whose scores should take at most this many milliseconds are
    # scored in the serving process (0: every batch goes to the workers).
    scoring_inline_ms: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_SCORING_INLINE_MS", "10"))
    )

    # Outbound model calls (predict and batch prompts, remote and local models), per server
    # process: at most this many in flight per user, per target (upstream scheme://host:port
    # or local checkpoint) and in all; a predict call without a free slot waits this long,
    # then 429 (its user's limit) or 503 (target/all). The HTTP pool holds `outbound_total`
    # connections and gives up waiting for one after `outbound_pool_timeout_s`.
    outbound_per_user: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_OUTBOUND_PER_USER", "16"))
    )
    outbound_per_target: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_OUTBOUND_PER_TARGET", "64"))
    )
    outbound_total: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_OUTBOUND_TOTAL", "256"))
    )
    outbound_wait_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_OUTBOUND_WAIT_S", "1"))
    )
    outbound_pool_timeout_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_OUTBOUND_POOL_TIMEOUT_S", "5"))
    )

    # Text search (q): use the index of migration 0006 ("off": every search scans, as before);
    # a q of 1-2 characters (no trigram) scans, refused past this many rows to read.
    search_index: bool = field(
        default_factory=lambda: (
            os.environ.get("FINETUNE_LAB_SEARCH_INDEX", "on").lower()
            not in ("off", "0", "false", "no")
        )
    )
    search_scan_max_rows: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_SEARCH_SCAN_MAX_ROWS", "100000"))
    )
    # SQLite: this process's indexer brings the index up to date after ingest (migration 0010;
    # "off": it never does, another process may; searches stay exact either way, scanning the
    # rows not indexed yet). Rows per indexing transaction; how often it looks for new rows.
    search_indexer: bool = field(
        default_factory=lambda: (
            os.environ.get("FINETUNE_LAB_SEARCH_INDEXER", "on").lower()
            not in ("off", "0", "false", "no")
        )
    )
    search_index_chunk_rows: int = field(
        default_factory=lambda: int(os.environ.get("FINETUNE_LAB_SEARCH_INDEX_CHUNK_ROWS", "5000"))
    )
    search_index_poll_s: float = field(
        default_factory=lambda: float(os.environ.get("FINETUNE_LAB_SEARCH_INDEX_POLL_S", "0.2"))
    )

    def scoring_pool(self) -> PoolSettings:
        from finetune_lab.server.services.scoring_pool import PoolSettings

        return PoolSettings(
            workers=self.scoring_workers,
            row_s=self.validation_row_budget_s,
            batch_s=self.validation_batch_budget_s,
            schema_check_s=self.schema_check_budget_s,
            inline_s=self.scoring_inline_ms / 1000,
        )
