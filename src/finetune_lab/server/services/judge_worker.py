"""The judge worker: grades ingested rows with each judge of their job, on the batch test queue.

A judge run (one per ingest batch of a job with judges) is claimed, leased, heart-beaten,
handed back at shutdown and taken over after a crash exactly like a batch test run (it is the
same `BatchWorker`, over the `judge_runs` table). Per (row, judge) the worker asks the judge
model (through the outbound slots, waiting for its user's share as batch prompts do), reads the
score; every 0.2 s the answered grades are written, up to 64 per transaction: each into its
row's metrics as `judge:<name>` and its round's rollup, its outcome into `judge_results`, and
`prediction_updated` plus `round_complete` stream events. Grading yields to ingest in this
process (`IngestActivity`): it waits for a pause before each claim, read, call and write. A
call that fails upstream (5xx, 408, 429, no connection) or whose answer holds no score within
[min, max] is asked again, at most `attempts` times with doubling backoff; then the failure is
recorded for that row, never a zero. Each call is counted in `judge_results` (status `calling`)
before it is made, so a restart or takeover never asks a row more than `attempts` times.

A database outage ends the run's task, not the run: its unwritten answers are dropped and, once
the database answers again, the run is handed back (lease expired, the claim not counted) and
claimed again; outcomes already written are skipped. Every write checks the claim it was made
under (lease owner and claim number), so a task left over from an earlier claim never writes.

Rows carry their version (their `created_at`, stamped per ingest): a run grades only the version
its ingest wrote. A row re-sent since is left to the newer run, so a late grade never lands on
new text. Grading stops when the job is deleted (its runs go with it) or its API key is revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.concurrency import run_in_threadpool

from finetune_lab.server.db import Database
from finetune_lab.server.db.job_lock import lock_job
from finetune_lab.server.db.serving_tables import judge_results, judge_runs, models
from finetune_lab.server.db.tables import api_keys, jobs, predictions, round_rollups, stream_events
from finetune_lab.server.errors import DATABASE_UNAVAILABLE, APIError
from finetune_lab.server.notify import StreamNotifier
from finetune_lab.server.services import stream, traces
from finetune_lab.server.services.backends import GenerationParams
from finetune_lab.server.services.batch_worker import BatchWorker, LeaseLost, WorkerSettings
from finetune_lab.server.services.inference import CallRecord, Inference
from finetune_lab.server.services.ingest_activity import IngestActivity
from finetune_lab.server.services.judges import Judge, ScoreError, judges_of, parse_score
from finetune_lab.server.services.queries import PredictionFilters, page_rows, trend_point
from finetune_lab.server.services.rollups import RoundTotals
from finetune_lab.server.services.tokens import utcnow

log = logging.getLogger("finetune_lab.server.judges")

OPERATION = "judge"
MAX_ANSWER_CHARS = 2_000  # of a judge's answer kept with a failed grade
RETRYABLE_STATUS = frozenset({408, 429})
FLUSH_S = 0.2  # answered grades are written this often, up to FLUSH_MAX per transaction
FLUSH_MAX = 64
FINAL = ("graded", "failed")  # judge_results statuses that end a (row, judge); else "calling"


@dataclass(frozen=True)
class JudgeSettings:
    attempts: int = 3
    backoff_s: float = 1.0
    concurrency: int = 4
    max_tokens: int = 256


@dataclass
class Outcome:
    value: float | None
    answer: str | None
    error: str | None
    attempts: int
    traces: list[dict[str, Any]]


@dataclass
class Graded:
    judge: Judge
    row: dict[str, Any]
    outcome: Outcome


class GradingStopped(Exception):
    """The job was deleted or its key revoked: the run ends, its rows stay ungraded."""


def stop_reason(conn: Connection, job_id: str, user_id: int) -> str | None:
    """Why grading must stop for this job, or None while its owner's key is live."""
    row = conn.execute(
        select(jobs.c.api_key_id, api_keys.c.revoked_at)
        .select_from(jobs.outerjoin(api_keys, api_keys.c.id == jobs.c.api_key_id))
        .where(jobs.c.id == job_id, jobs.c.user_id == user_id)
    ).first()
    if row is None:
        return "grading stopped: the job was deleted"
    if row.api_key_id is None:
        return "grading stopped: the job's token was revoked (no API key is bound to the job)"
    if row.revoked_at is not None:
        return "grading stopped: the job's API key was revoked"
    return None


class JudgeWorker(BatchWorker):
    table = judge_runs
    label = "judge run"

    def __init__(
        self,
        db: Database,
        inference: Inference,
        settings: WorkerSettings,
        judging: JudgeSettings,
        notifier: StreamNotifier,
        activity: IngestActivity | None = None,
    ) -> None:
        super().__init__(db, inference, settings)
        self.judging = judging
        self.notifier = notifier
        self.activity = activity or IngestActivity(max_wait_s=0.0)
        self._handing_back = 0  # runs waiting out an outage: claims wait for them

    async def _before_claim(self) -> None:
        await self.activity.quiet()

    def _claim(self) -> dict[str, Any] | None:
        # A read first: an idle queue never takes SQLite's write lock (ingest's lock too).
        if self._handing_back:
            return None  # our own runs go back first, so an outage never counts as a claim
        r = judge_runs.c
        claimable = or_(
            r.status == "queued", and_(r.status == "running", r.lease_expires_at < utcnow())
        )
        with self.db.read() as conn:
            if conn.execute(select(r.id).where(claimable).limit(1)).first() is None:
                return None
        claimed = super()._claim()
        if claimed is not None:
            claimed["claim"] = claimed["attempts"] + 1  # the attempts value our claim wrote
        return claimed

    def _mine(self, run: dict[str, Any]) -> Any:
        """The run is still held by this very claim (not an earlier one of this process)."""
        return and_(self._owned(run["id"]), judge_runs.c.attempts == run["claim"])

    def _beat(self, run: dict[str, Any]) -> bool:
        expires = utcnow() + timedelta(seconds=self.settings.lease_s)
        with self.db.write() as conn:
            result = conn.execute(
                update(judge_runs).where(self._mine(run)).values(lease_expires_at=expires)
            )
        return result.rowcount == 1

    def _end(self, run: dict[str, Any], status: str, error: str | None) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(judge_runs)
                .where(self._mine(run))
                .values(
                    status=status,
                    error=error,
                    finished_at=utcnow(),
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )

    def _hand_back(self, run: dict[str, Any]) -> None:
        """After an outage: the run is claimable again at once, and this claim is not counted
        against the run's claims (an outage is not a crash of the run)."""
        with self.db.write() as conn:
            conn.execute(
                update(judge_runs)
                .where(self._mine(run))
                .values(lease_expires_at=utcnow(), attempts=judge_runs.c.attempts - 1)
            )

    async def _hand_back_when_reachable(self, run: dict[str, Any]) -> None:
        self._handing_back += 1
        try:
            while True:
                try:
                    await run_in_threadpool(self._hand_back, run)
                except DATABASE_UNAVAILABLE:
                    await asyncio.sleep(self.settings.poll_s)
                else:
                    log.warning("judge run %s handed back after a database outage", run["id"])
                    return
        finally:
            self._handing_back -= 1
            self.wake()

    # -- one run ----------------------------------------------------------------------------

    def _plan(
        self, run: dict[str, Any]
    ) -> tuple[list[tuple[Judge, Any]], set[tuple[int, int, str]]]:
        with self.db.read() as conn:
            reason = stop_reason(conn, run["job_id"], run["user_id"])
            if reason:
                raise GradingStopped(reason)
            config = conn.scalar(select(jobs.c.config).where(jobs.c.id == run["job_id"]))
            plan = []
            for judge in judges_of(config):
                model = conn.execute(
                    select(models).where(
                        models.c.user_id == run["user_id"],
                        or_(models.c.id == judge.model, models.c.name == judge.model),
                    )
                ).first()
                plan.append((judge, model))
            done = {
                (int(step), int(index), name)
                for step, index, name in conn.execute(
                    select(
                        judge_results.c.step, judge_results.c.sample_index, judge_results.c.judge
                    ).where(judge_results.c.run_id == run["id"], judge_results.c.status.in_(FINAL))
                )
            }
        return plan, done

    async def _execute(self, run: dict[str, Any]) -> None:
        run_id = run["id"]
        try:
            plan, done = await run_in_threadpool(self._plan, run)
            await self._grade_run(run, plan, done)
            await run_in_threadpool(self._end, run, "completed", None)
        except LeaseLost:
            log.info("judge run %s stopped: its job was deleted or another worker took it", run_id)
        except GradingStopped as exc:
            await run_in_threadpool(self._end, run, "cancelled", str(exc))
        except asyncio.CancelledError:
            raise
        except DATABASE_UNAVAILABLE as exc:
            log.warning(
                "judge run %s paused: database unavailable (%s)", run_id, type(exc).__name__
            )
            await self._hand_back_when_reachable(run)
        except Exception as exc:
            log.exception("judge run %s failed", run_id)
            await run_in_threadpool(self._end, run, "failed", f"internal error: {exc!r}")

    async def _grade_run(
        self,
        run: dict[str, Any],
        plan: list[tuple[Judge, Any]],
        done: set[tuple[int, int, str]],
    ) -> None:
        stop = asyncio.Event()
        stopped: list[BaseException] = []
        semaphore = asyncio.Semaphore(max(1, self.judging.concurrency))
        outcomes: list[Graded] = []  # answered, not yet written
        finished = asyncio.Event()

        def halt(exc: BaseException) -> None:
            stopped.append(exc)
            stop.set()

        async def heartbeat() -> None:
            while not stop.is_set():
                await asyncio.sleep(self.settings.lease_s / 3)
                try:
                    if not await run_in_threadpool(self._beat, run):
                        halt(LeaseLost(run["id"]))
                except DATABASE_UNAVAILABLE as exc:
                    halt(exc)

        async def writer() -> None:
            """Writes what was answered every FLUSH_S, many grades per transaction."""
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(finished.wait(), FLUSH_S)
                while outcomes and not stop.is_set():
                    await self.activity.quiet()
                    batch = outcomes[:FLUSH_MAX]
                    del outcomes[:FLUSH_MAX]
                    try:
                        await run_in_threadpool(self._store_grades, run, batch)
                    except (LeaseLost, GradingStopped, *DATABASE_UNAVAILABLE) as exc:
                        halt(exc)  # an outage drops the batch: the next claim asks again
                if finished.is_set() or stop.is_set():
                    return

        async def one(step: int, index: int) -> None:
            todo = [(j, m) for j, m in plan if (step, index, j.name) not in done]
            if not todo:
                return
            async with semaphore:
                if stop.is_set():
                    return
                try:
                    await self.activity.quiet()
                    row = await run_in_threadpool(self._current_row, run, step, index)
                    if row is None:
                        return  # re-sent since (a newer run grades it) or gone
                    for judge, model in todo:
                        if stop.is_set():
                            return
                        outcome = await self._grade(run, judge, model, row, stop)
                        if outcome is not None:
                            outcomes.append(Graded(judge, row, outcome))
                except (LeaseLost, *DATABASE_UNAVAILABLE) as exc:
                    halt(exc)

        keys = list(dict.fromkeys((int(s), int(i)) for s, i in run["keys"]))
        beat = asyncio.create_task(heartbeat())
        write = asyncio.create_task(writer())
        try:
            await asyncio.gather(*(one(step, index) for step, index in keys))
            finished.set()
            await write
        finally:
            stop.set()
            for task in (beat, write):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if stopped:
            raise stopped[0]

    def _current_row(self, run: dict[str, Any], step: int, index: int) -> dict[str, Any] | None:
        """The row as its ingest wrote it (read through the row-reading query), or None."""
        with self.db.read() as conn:
            return _row_version(conn, run, step, index)

    async def _grade(
        self,
        run: dict[str, Any],
        judge: Judge,
        model: Any,
        row: dict[str, Any],
        stop: asyncio.Event,
    ) -> Outcome | None:
        """Ask until a score, a final failure or `attempts` calls for this row version (counted
        in the database before each call, restarts included); None when the run stopped."""
        if model is None:
            gone = f"model {judge.model!r} is no longer registered"
            return Outcome(None, None, gone, 0, [])
        messages = [
            {
                "role": "user",
                "content": judge.render(row["prompt"], row["prediction"], row["ground_truth"]),
            }
        ]
        params = GenerationParams(
            messages=messages, temperature=0.0, max_tokens=self.judging.max_tokens
        )
        attempts = max(1, self.judging.attempts)
        recorded: list[dict[str, Any]] = []
        error: str | None = None
        answer: str | None = None
        while True:
            if stop.is_set():
                return None
            await self.activity.quiet()
            attempt = await run_in_threadpool(self._count_call, run, judge, row, attempts)
            if attempt == 0:
                return None  # re-sent meanwhile: the newer run grades the new version
            if attempt is None:  # the calls were spent before a restart or outage
                calls = f"{attempts} call" + ("s" if attempts != 1 else "")
                spent = (
                    f"gave up after {calls} without a recorded answer (the server restarted "
                    "or lost its database while they were in progress)"
                )
                return Outcome(None, None, spent, attempts, [])
            record = CallRecord(
                run["user_id"], model.name, operation=OPERATION, model_id=model.id, input=messages
            )
            retryable = True
            try:
                completion = await self.inference.complete(
                    run["user_id"], model, params, queue=True
                )
            except APIError as exc:
                recorded.append(record.values(error=exc))
                error = f"upstream error {exc.status_code} ({exc.type}): {exc.message}"
                answer = None
                retryable = exc.status_code >= 500 or exc.status_code in RETRYABLE_STATUS
            else:
                recorded.append(record.values(completion=completion))
                answer = completion.text
                try:
                    value = parse_score(answer, judge.min, judge.max)
                except ScoreError as exc:
                    error = str(exc)
                else:
                    return Outcome(value, answer[:MAX_ANSWER_CHARS], None, attempt, recorded)
            if not retryable or attempt >= attempts:
                clipped = answer[:MAX_ANSWER_CHARS] if answer is not None else None
                return Outcome(None, clipped, error, attempt, recorded)
            await asyncio.sleep(self.judging.backoff_s * 2 ** (attempt - 1))

    def _count_call(
        self, run: dict[str, Any], judge: Judge, row: dict[str, Any], attempts: int
    ) -> int | None:
        """Counts the call about to be made for (row version, judge) and returns its number,
        None when `attempts` calls were already made (by earlier claims of the run), or 0 when
        the row was re-sent since (its entry belongs to the newer version's run)."""
        j = judge_results.c
        key = (
            j.job_id == run["job_id"],
            j.step == row["step"],
            j.sample_index == row["sample_index"],
            j.judge == judge.name,
        )
        with self.db.write() as conn:
            if conn.execute(select(judge_runs.c.id).where(self._mine(run))).first() is None:
                raise LeaseLost(run["id"])
            p = predictions.c
            version = conn.scalar(
                select(p.created_at).where(
                    p.job_id == run["job_id"],
                    p.step == row["step"],
                    p.sample_index == row["sample_index"],
                )
            )
            if version != run["rows_at"]:
                return 0
            found = conn.execute(select(j.rows_at, j.status, j.attempts).where(*key)).first()
            made = 0
            if found is not None and found.rows_at == run["rows_at"]:
                made = int(found.attempts)
            if made >= attempts:
                return None
            values = {
                "epoch": row["epoch"],
                "run_id": run["id"],
                "rows_at": run["rows_at"],
                "status": "calling",
                "value": None,
                "answer": None,
                "error": None,
                "attempts": made + 1,
                "updated_at": utcnow(),
            }
            if found is None:
                conn.execute(
                    insert(judge_results).values(
                        job_id=run["job_id"],
                        step=row["step"],
                        sample_index=row["sample_index"],
                        judge=judge.name,
                        **values,
                    )
                )
            else:
                conn.execute(update(judge_results).where(*key).values(**values))
        return made + 1

    def _store_grades(self, run: dict[str, Any], graded: list[Graded]) -> None:
        """Grades, all or nothing: each row's metric, its round's rollup, the outcomes, the
        call traces and the stream events, in one transaction."""
        job_id = run["job_id"]
        with self.db.write() as conn:
            lock_job(conn, job_id)  # rollups change one writer at a time
            if conn.execute(select(judge_runs.c.id).where(self._mine(run))).first() is None:
                raise LeaseLost(run["id"])
            reason = stop_reason(conn, job_id, run["user_id"])
            if reason:
                raise GradingStopped(reason)
            changes = _Changes(conn, run)
            for item in graded:
                current = changes.row(item.row["step"], item.row["sample_index"])
                if current is None:
                    continue  # re-sent while the judge answered: the newer run grades it
                if item.outcome.value is not None:
                    changes.grade(current, item.judge, item.outcome.value)
                _record_outcome(conn, self.db.is_postgres, run, item.judge, current, item.outcome)
                for values in item.outcome.traces:
                    traces.insert_trace(conn, run["user_id"], **values)
            announced = changes.write()
            if self.db.is_postgres and announced:
                conn.execute(
                    text("SELECT pg_notify(:channel, :job_id)"),
                    {"channel": stream.NOTIFY_CHANNEL, "job_id": job_id},
                )
        if announced:
            self.notifier.publish(job_id)


def _row_version(
    conn: Connection, run: dict[str, Any], step: int, index: int
) -> dict[str, Any] | None:
    rows = page_rows(
        conn,
        run["job_id"],
        PredictionFilters(step=step, sample_index=index),
        limit=1,
        user_id=run["user_id"],
    )
    if not rows or rows[0]["created_at"] != run["rows_at"]:
        return None
    return rows[0]


class _Changes:
    """What one write transaction of grades changes: rows' metrics and rounds' totals, each
    read once and written once, and the events that announce them."""

    def __init__(self, conn: Connection, run: dict[str, Any]) -> None:
        self.conn = conn
        self.run = run
        self.rows: dict[tuple[int, int], dict[str, Any] | None] = {}
        self.dirty: dict[tuple[int, int], dict[str, Any]] = {}
        self.rounds: dict[tuple[int, int], RoundTotals] = {}  # (step, epoch)
        self.updated: dict[tuple[str, int, int], list[int]] = defaultdict(list)

    def row(self, step: int, index: int) -> dict[str, Any] | None:
        if (step, index) not in self.rows:
            self.rows[(step, index)] = _row_version(self.conn, self.run, step, index)
        return self.rows[(step, index)]

    def grade(self, row: dict[str, Any], judge: Judge, value: float) -> None:
        """The score into the row's metrics and its round's totals (exact: a grade that
        replaces one takes the old value out of the sum first)."""
        metrics = dict(row["metrics"] or {})
        old = metrics.get(judge.metric)
        metrics[judge.metric] = value
        row["metrics"] = metrics
        self.dirty[(row["step"], row["sample_index"])] = row
        at = (row["step"], row["epoch"])
        if at not in self.rounds:
            r = round_rollups.c
            stored = self.conn.execute(
                select(round_rollups).where(
                    r.job_id == self.run["job_id"], r.step == at[0], r.epoch == at[1]
                )
            ).one()
            self.rounds[at] = RoundTotals.from_row(stored)
        acc = self.rounds[at].metrics.setdefault(judge.metric, [0.0, 0])
        if old is not None:
            acc[0] -= old
            acc[1] -= 1
        acc[0] += value
        acc[1] += 1
        self.updated[(judge.name, row["epoch"], row["step"])].append(row["sample_index"])

    def write(self) -> bool:
        """Rows, rollups and events; True when anything changed (streams are woken)."""
        job_id = self.run["job_id"]
        p, r = predictions.c, round_rollups.c
        for (step, index), row in self.dirty.items():
            self.conn.execute(
                update(predictions)
                .where(p.job_id == job_id, p.step == step, p.sample_index == index)
                .values(metrics=row["metrics"])
            )
        for (step, epoch), totals in self.rounds.items():
            self.conn.execute(
                update(round_rollups)
                .where(r.job_id == job_id, r.step == step, r.epoch == epoch)
                .values(metrics=totals.metrics)
            )
        if not self.updated:
            return False
        now = utcnow()
        events = []
        for (name, epoch, step), indexes in sorted(self.updated.items()):
            payload = {
                "reason": "judge",
                "judge": name,
                "count": len(indexes),
                "rounds": [
                    {
                        "epoch": epoch,
                        "step": step,
                        "count": len(indexes),
                        "ranges": stream.index_ranges(indexes),
                    }
                ],
            }
            events.append(
                {
                    "job_id": job_id,
                    "kind": "prediction_updated",
                    "payload": payload,
                    "created_at": now,
                }
            )
        for (step, epoch), totals in sorted(self.rounds.items(), key=lambda kv: kv[0][::-1]):
            events.append(
                {
                    "job_id": job_id,
                    "kind": "round_complete",
                    "payload": trend_point(epoch, step, totals),
                    "created_at": now,
                }
            )
        self.conn.execute(insert(stream_events), events)
        return True


def _record_outcome(
    conn: Connection,
    is_postgres: bool,
    run: dict[str, Any],
    judge: Judge,
    row: dict[str, Any],
    outcome: Outcome,
) -> None:
    values = {
        "job_id": run["job_id"],
        "step": row["step"],
        "sample_index": row["sample_index"],
        "judge": judge.name,
        "epoch": row["epoch"],
        "run_id": run["id"],
        "rows_at": run["rows_at"],
        "status": "graded" if outcome.value is not None else "failed",
        "value": outcome.value,
        "answer": outcome.answer,
        "error": outcome.error,
        "attempts": outcome.attempts,
        "updated_at": utcnow(),
    }
    stmt = (pg_insert if is_postgres else sqlite_insert)(judge_results).values(**values)
    keys = ("job_id", "step", "sample_index", "judge")
    changes = {name: stmt.excluded[name] for name in values if name not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=changes))
