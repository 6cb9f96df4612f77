"""Scoring and validation out of the serving process: a pool of worker processes.

Per-row work (scores, JSON Schema validation) holds the GIL; in the serving process one
expensive row stalled every request, `/healthz` included. Here a batch is cut into chunks (one
IPC round trip per chunk, not per row) spread over the workers, so ingest also uses every core.

Budgets (settings.py): each row's validation gets `row_s` seconds, each batch `batch_s` seconds
of validation in all (shared by its chunks in proportion to their rows); the worker interrupts
a row past its budget (SIGALRM) and records a timeout. Behind that, pebble kills a worker whose
chunk overruns its share by GRACE_S (a stall SIGALRM cannot break): its rows are retried one per
task, and a row whose own task dies is stored with its scores and a timeout error.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, TimeoutError
from dataclasses import dataclass
from typing import Any

from pebble import ProcessExpired, ProcessPool

from finetune_lab.scoring import worker
from finetune_lab.scoring.metrics import CER_MAX_CELLS
from finetune_lab.scoring.worker import Budget, RowResult, ValidatorSpec

GRACE_S = 5.0  # a chunk's hard limit is its budget plus this (worker start-up, IPC)
# Seconds per edit-distance cell (~4x the measured 2.6e-11), per character and per row (~2x
# measured): estimates of a batch's scoring cost, for the inline choice and the hard limits.
CELL_S = 1e-10
CHAR_S = 3e-8
ROW_S = 2e-6
CHUNK_ROWS = 500  # at most this many rows per task: load spreads over the workers
MIN_CHUNK_ROWS = 50  # fewer per task and the IPC costs more than the rows


@dataclass(frozen=True)
class PoolSettings:
    workers: int  # 0: score in the serving process, without budgets (embedding, debugging)
    row_s: float
    batch_s: float
    schema_check_s: float
    # A batch without a JSON Schema whose scores are estimated to take at most this long is
    # scored in the serving process: the round trip to a worker would cost more.
    inline_s: float = 0.01


class SchemaCheckTimeout(Exception):
    """Checking a job's schema took longer than its budget."""


def chunks(count: int, workers: int) -> list[range]:
    """Row ranges: about one per worker, at most CHUNK_ROWS and (unless there are fewer rows
    in all) at least MIN_CHUNK_ROWS rows each."""
    per = max(MIN_CHUNK_ROWS, math.ceil(count / max(workers, 1)))
    per = min(per, CHUNK_ROWS)
    return [range(start, min(start + per, count)) for start in range(0, count, per)]


def _scoring_s(rows: list[tuple[str, str | None]]) -> float:
    """A generous bound on the seconds the scores of `rows` take."""
    cells = chars = 0
    for prediction, truth in rows:  # one plain loop: this runs on every ingest
        length, truth_length = len(prediction), len(truth) if truth else 0
        cells += min(length * truth_length, CER_MAX_CELLS)
        chars += length + truth_length
    return cells * CELL_S + chars * CHAR_S + len(rows) * ROW_S


class ScoringPool:
    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self._pool: ProcessPool | None = None

    @classmethod
    def in_process(cls) -> ScoringPool:
        """No workers: scores in the calling thread, without budgets (tools, benchmarks)."""
        return cls(PoolSettings(workers=0, row_s=math.inf, batch_s=math.inf, schema_check_s=0))

    def start(self) -> None:
        """Workers start from a fresh interpreter (forkserver, else spawn): forking a threaded
        server is unsafe, and a worker imports only the scoring module."""
        if self.settings.workers <= 0 or self._pool is not None:
            return
        methods = multiprocessing.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(["finetune_lab.scoring.worker"])
        self._pool = ProcessPool(
            max_workers=self.settings.workers, initializer=worker.init_worker, context=context
        )
        self._pool.schedule(os.getpid)  # starts the workers now, not on the first ingest

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
            pool.join(timeout=10)

    # -- ingest --------------------------------------------------------------------------------
    def score_rows(
        self, spec: ValidatorSpec | None, rows: list[tuple[str, str | None]]
    ) -> list[RowResult]:
        """Scores and validation of every (prediction, ground_truth), in order."""
        return self.submit(spec, rows)()

    def submit(
        self, spec: ValidatorSpec | None, rows: list[tuple[str, str | None]]
    ) -> Callable[[], list[RowResult]]:
        """Start scoring `rows`; the returned call waits for their results, in order. The
        caller can do its own per-row work in between, while the workers score."""
        cheap = (spec is None or not spec.has_schema) and _scoring_s(rows) <= self.settings.inline_s
        if self._pool is None or cheap or not rows:
            done = worker.score_chunk(spec, rows, None)
            return lambda: done
        parts = [[rows[i] for i in part] for part in chunks(len(rows), self.settings.workers)]
        budgets = [self._budget(len(part), len(rows)) for part in parts]
        futures = [
            self._submit(spec, part, budget) for part, budget in zip(parts, budgets, strict=True)
        ]

        def collect() -> list[RowResult]:
            results: list[RowResult] = []
            for part, budget, future in zip(parts, budgets, futures, strict=True):
                results.extend(self._collect(spec, part, budget, future))
            return results

        return collect

    def _budget(self, rows: int, of: int) -> Budget:
        return Budget(row_s=self.settings.row_s, chunk_s=self.settings.batch_s * rows / of)

    def _submit(
        self, spec: ValidatorSpec | None, rows: list[tuple[str, str | None]], budget: Budget
    ) -> Future[list[RowResult]]:
        assert self._pool is not None
        limit = min(budget.chunk_s, budget.row_s * len(rows)) + GRACE_S + _scoring_s(rows)
        return self._pool.schedule(worker.score_chunk, args=(spec, rows, budget), timeout=limit)

    def _collect(
        self,
        spec: ValidatorSpec | None,
        rows: list[tuple[str, str | None]],
        budget: Budget,
        future: Future[list[RowResult]],
    ) -> list[RowResult]:
        """A chunk's results; after a killed worker, its rows again one per task."""
        try:
            return future.result()
        except (TimeoutError, ProcessExpired):
            if len(rows) > 1:
                singles = [self._submit(spec, [row], budget) for row in rows]
                return [
                    result
                    for row, single in zip(rows, singles, strict=True)
                    for result in self._collect(spec, [row], budget, single)
                ]
            if spec is None:  # scores alone are bounded: nothing else can stall
                raise
            # Scores only: they are bounded, the validation is what could not finish.
            assert self._pool is not None
            limit = GRACE_S + _scoring_s(rows)
            scored = self._pool.schedule(
                worker.scores_only, args=(spec, rows, budget.row_s), timeout=limit
            )
            return scored.result()

    # -- job creation --------------------------------------------------------------------------
    def check_config(self, config: dict[str, Any] | None) -> str | None:
        """Why a job config's validators are unusable, or None. Raises SchemaCheckTimeout when
        the check (in a worker) takes longer than its budget."""
        try:
            spec = ValidatorSpec.of(config)
        except (AttributeError, TypeError) as exc:
            return f"config.predictions.validators is malformed: {exc}"
        if spec is None:
            return None
        if self._pool is None:
            return worker.check_config(spec)
        future = self._pool.schedule(
            worker.check_config, args=(spec,), timeout=self.settings.schema_check_s
        )
        try:
            return future.result()
        except (TimeoutError, ProcessExpired) as exc:
            raise SchemaCheckTimeout from exc
