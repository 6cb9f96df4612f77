"""The batch test queue's worker: claims runs from the database and executes them.

Every server process runs one. A claim takes a lease (`lease_owner`, `lease_expires_at`) that a
heartbeat extends; a run whose lease expired (its process died) is claimed again and resumes,
skipping prompts already answered; after `MAX_ATTEMPTS` claims it is marked failed instead, so
no run stays `running` forever. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`; SQLite's
single writer serializes claims. Results are written one by one as prompts finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.concurrency import run_in_threadpool

from finetune_lab.scoring import score
from finetune_lab.server.db import Database
from finetune_lab.server.db.serving_tables import models, test_run_results, test_runs
from finetune_lab.server.errors import DATABASE_UNAVAILABLE, APIError
from finetune_lab.server.services import suites, traces
from finetune_lab.server.services.backends import Completion, GenerationParams
from finetune_lab.server.services.inference import CallRecord, Inference
from finetune_lab.server.services.rows import plain
from finetune_lab.server.services.tokens import utcnow
from finetune_lab.server.services.trace_context import SpanContext

log = logging.getLogger("finetune_lab.server.batch")

MAX_ATTEMPTS = 3
OPERATION = "batch_test"


@dataclass(frozen=True)
class WorkerSettings:
    lease_s: float = 30.0
    poll_s: float = 1.0
    parallel_runs: int = 2


class LeaseLost(Exception):
    """The run was cancelled, or another worker took it over."""


class BatchWorker:
    # The queue table: any table with id, user_id, status and the run columns of
    # `serving_tables._queue_columns` (attempts, the lease, error and the timestamps).
    table: Table = test_runs
    label = "batch run"

    def __init__(self, db: Database, inference: Inference, settings: WorkerSettings) -> None:
        self.db = db
        self.inference = inference
        self.settings = settings
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self._database_down = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.create_task(self._claim_loop(), name=f"{self.label}-worker")

    async def stop(self) -> None:
        """Stop, and hand our runs back at once (lease expired now) for the next process."""
        tasks = [t for t in (self._main, *self._runs) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await run_in_threadpool(self._release_leases)

    def wake(self) -> None:
        """Called from any thread when a run was submitted."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- claiming ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            if len(self._runs) < self.settings.parallel_runs:
                await self._before_claim()
                try:
                    run = await run_in_threadpool(self._claim)
                    self._database_down = False
                except DATABASE_UNAVAILABLE as exc:  # one line per outage, not one a second
                    if not self._database_down:
                        log.warning(
                            "%ss wait for the database: %s", self.label, exc.__class__.__name__
                        )
                    self._database_down = True
                    run = None
                except Exception:
                    log.exception("claiming a %s failed", self.label)
                    run = None
                if run is not None:
                    task = asyncio.create_task(self._execute(run), name=f"batch-{run['id']}")
                    self._runs.add(task)
                    task.add_done_callback(self._done)
                    continue
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)

    async def _before_claim(self) -> None:
        """A hook: subclasses may wait here (the judge worker waits for a pause in ingest)."""

    def _done(self, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        self._wake.set()  # a slot is free

    def _claim(self) -> dict[str, Any] | None:
        now = utcnow()
        r = self.table.c
        claimable = or_(r.status == "queued", and_(r.status == "running", r.lease_expires_at < now))
        query = select(self.table).where(claimable).order_by(r.created_at, r.id).limit(1)
        if self.db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        with self.db.write() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            if row.attempts >= MAX_ATTEMPTS:
                conn.execute(
                    update(self.table)
                    .where(r.id == row.id)
                    .values(
                        status="failed",
                        error=f"interrupted {row.attempts} times (server restarts); gave up",
                        finished_at=now,
                        lease_owner=None,
                        lease_expires_at=None,
                    )
                )
                self.wake()
                return None
            conn.execute(
                update(self.table)
                .where(r.id == row.id)
                .values(
                    status="running",
                    lease_owner=self.owner,
                    lease_expires_at=now + timedelta(seconds=self.settings.lease_s),
                    attempts=row.attempts + 1,
                    started_at=func.coalesce(r.started_at, now),
                )
            )
            claimed = plain(row)
        if row.status == "running":
            log.warning("resuming %s %s (attempt %d)", self.label, row.id, row.attempts + 1)
        return claimed

    def _owned(self, run_id: str) -> Any:
        r = self.table.c
        return and_(r.id == run_id, r.lease_owner == self.owner, r.status == "running")

    def _heartbeat(self, run_id: str) -> bool:
        expires = utcnow() + timedelta(seconds=self.settings.lease_s)
        with self.db.write() as conn:
            result = conn.execute(
                update(self.table).where(self._owned(run_id)).values(lease_expires_at=expires)
            )
        return result.rowcount == 1

    def _release_leases(self) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(self.table)
                .where(self.table.c.lease_owner == self.owner, self.table.c.status == "running")
                .values(lease_expires_at=utcnow())
            )

    def _finish(self, run_id: str, status: str, error: str | None) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(self.table)
                .where(self._owned(run_id))
                .values(
                    status=status,
                    error=error,
                    finished_at=utcnow(),
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )

    # -- executing --------------------------------------------------------------------------

    def _load(self, run: dict[str, Any]) -> tuple[Any, list[dict[str, Any]], set[int]]:
        with self.db.read() as conn:
            model = conn.execute(
                select(models).where(
                    models.c.id == run["model_id"], models.c.user_id == run["user_id"]
                )
            ).first()
            items = suites.suite_items(conn, run["test_suite_id"], run["total_prompts"])
            done = set(
                conn.scalars(
                    select(test_run_results.c.position).where(
                        test_run_results.c.run_id == run["id"]
                    )
                )
            )
        return model, items, done

    async def _execute(self, run: dict[str, Any]) -> None:
        run_id = run["id"]
        try:
            model, items, done = await run_in_threadpool(self._load, run)
            if model is None:
                await run_in_threadpool(self._finish, run_id, "failed", "the model was deleted")
                return
            if len(items) < run["total_prompts"]:
                message = "the test suite was deleted"
                await run_in_threadpool(self._finish, run_id, "failed", message)
                return
            todo = [item for item in items if item["index"] not in done]
            await self._run_prompts(run, model, todo)
            status, error = await run_in_threadpool(self._outcome, run_id)
            await run_in_threadpool(self._finish, run_id, status, error)
        except LeaseLost:
            log.info("batch run %s stopped: cancelled or taken over", run_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("batch run %s failed", run_id)
            await run_in_threadpool(self._finish, run_id, "failed", f"internal error: {exc!r}")

    async def _run_prompts(self, run: dict[str, Any], model: Any, todo: list[dict]) -> None:
        stop = asyncio.Event()
        config = run["config"] or {}
        semaphore = asyncio.Semaphore(int(config.get("concurrency") or 1))
        delay_s = int(config.get("delay_ms") or 0) / 1000.0

        async def heartbeat() -> None:
            while not stop.is_set():
                await asyncio.sleep(self.settings.lease_s / 3)
                if not await run_in_threadpool(self._heartbeat, run["id"]):
                    stop.set()

        async def one(item: dict[str, Any]) -> None:
            async with semaphore:
                if stop.is_set():
                    return
                still_ours = await self._answer(run, model, config, item)
                if not still_ours:
                    stop.set()
                elif delay_s:  # the run's pause between prompts, per concurrent lane
                    await asyncio.sleep(delay_s)

        beat = asyncio.create_task(heartbeat())
        try:
            await asyncio.gather(*(one(item) for item in todo))
        finally:
            stop_was_set = stop.is_set()
            stop.set()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        if stop_was_set:
            raise LeaseLost(run["id"])

    async def _answer(
        self, run: dict[str, Any], model: Any, config: dict[str, Any], item: dict[str, Any]
    ) -> bool:
        messages = item["messages"] or [{"role": "user", "content": item["prompt"]}]
        params = GenerationParams(
            messages=messages,
            temperature=config.get("temperature", 0.0),
            max_tokens=config.get("max_tokens"),
        )
        record = CallRecord(
            run["user_id"],
            model.name,
            operation=OPERATION,
            model_id=model.id,
            test_run_id=run["id"],
            input=messages,
            provider=model.kind,
            job_id=model.job_id,
            step=model.step,
            context=SpanContext.in_run(run["id"]),
        )
        completion: Completion | None = None
        error: APIError | None = None
        try:
            # Queued, not refused: the run waits for its user's slot (it holds none meanwhile).
            completion = await self.inference.complete(run["user_id"], model, params, queue=True)
        except APIError as exc:
            error = exc
        trace = record.values(completion=completion, error=error)
        return await run_in_threadpool(self._store, run, item, completion, error, trace)

    def _store(
        self,
        run: dict[str, Any],
        item: dict[str, Any],
        completion: Completion | None,
        error: APIError | None,
        trace: dict[str, Any],
    ) -> bool:
        """Write one result and its trace; False when the run is no longer ours to write."""
        scores = score(completion.text, item["expected"]) if completion is not None else None
        values: dict[str, Any] = {
            "run_id": run["id"],
            "position": item["index"],
            "prompt": item["prompt"],
            "messages": item["messages"],
            "expected": item["expected"],
            "response": completion.text if completion is not None else None,
            "error": f"{error.type}: {error.message}" if error is not None else None,
            "finish_reason": completion.finish_reason if completion is not None else None,
            "latency_ms": trace["latency_ms"],
            "prompt_tokens": completion.prompt_tokens if completion else None,
            "completion_tokens": completion.completion_tokens if completion else None,
            "total_tokens": completion.total_tokens if completion else None,
            "created_at": utcnow(),
        }
        if scores is not None:
            values.update(scores._asdict())
        insert = pg_insert if self.db.is_postgres else sqlite_insert
        with self.db.write() as conn:
            owned = conn.execute(select(test_runs.c.id).where(self._owned(run["id"]))).first()
            if owned is None:
                return False
            conn.execute(insert(test_run_results).values(**values).on_conflict_do_nothing())
            traces.insert_trace(conn, run["user_id"], **trace)
        return True

    def _outcome(self, run_id: str) -> tuple[str, str | None]:
        r = test_run_results.c
        with self.db.read() as conn:
            done, failed = conn.execute(
                select(func.count(), func.count(r.error)).where(r.run_id == run_id)
            ).one()
            first_error = conn.scalar(
                select(r.error).where(r.run_id == run_id, r.error.is_not(None)).limit(1)
            )
        if done and failed == done:
            return "failed", f"all {done} prompts failed; first error: {first_error}"
        return "completed", None
