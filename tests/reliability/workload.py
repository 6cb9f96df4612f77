"""A mixed read/write workload against one or several server processes, and what it must leave.

Shared by tests/reliability/test_load.py (short runs in CI) and bench/load.py (longer runs that
print figures). Writers send rounds through the async SDK into a few shared jobs; every few
writes one of them re-sends an earlier round of its own with new answers (an upsert that must
replace, not add). Readers walk cursor pages, trends and epochs; one SSE stream per job follows
the writes (on PostgreSQL through another server process than the writers use). Afterwards the
database must hold exactly the last version of every row sent, and the rollups must equal
aggregates computed here from those rows.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from finetune_lab.client import AsyncFinetuneLabClient
from finetune_lab.scoring.metrics import score

ROUNDS_PER_EPOCH = 5  # several writers' rounds share an epoch: epoch rollups merge them
SCORE_NAMES = ("exact_match", "char_error_rate", "length_ratio", "word_overlap")
Key = tuple[int, int]  # (step, sample_index)


@dataclass
class LoadConfig:
    urls: list[str]  # server processes; workers are spread over them round-robin
    key: str
    job_prefix: str
    jobs: int = 3
    writers: int = 4
    readers: int = 4
    duration_s: float = 20.0
    batch_rows: int = 200
    resend_every: int = 3  # every Nth write of a writer re-sends one of its earlier rounds
    seed: int = 0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class OpStats:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class LoadResult:
    config: LoadConfig
    elapsed_s: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    rounds_written: int = 0
    rounds_resent: int = 0
    rows_sent: int = 0  # every row of every request, re-sends included
    stream_events: int = 0
    # job -> (step, sample_index) -> (epoch, prediction, ground_truth) of the last version sent
    expected: dict[str, dict[Key, tuple[int, str, str | None]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    stream_steps: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))

    def record(self, op: str, seconds: float) -> None:
        self.latencies[op].append(seconds)

    def stats(self) -> dict[str, OpStats]:
        out = {}
        for op, values in sorted(self.latencies.items()):
            ms = [v * 1000 for v in values]
            out[op] = OpStats(len(ms), statistics.median(ms), percentile(ms, 99), max(ms))
        return out

    @property
    def unique_rows(self) -> int:
        return sum(len(rows) for rows in self.expected.values())

    def summary(self, label: str) -> str:
        lines = [
            f"{label}: {self.elapsed_s:.1f} s, {self.rounds_written} rounds "
            f"(+{self.rounds_resent} re-sent), {self.rows_sent} rows sent, "
            f"{self.unique_rows} distinct rows, {self.rows_sent / self.elapsed_s:.0f} rows/s, "
            f"{self.stream_events} stream events, {len(self.errors)} errors",
            f"  {'operation':<14}{'count':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}",
        ]
        for op, st in self.stats().items():
            lines.append(
                f"  {op:<14}{st.count:>7}{st.p50_ms:>10.1f}{st.p99_ms:>10.1f}{st.max_ms:>10.1f}"
            )
        return "\n".join(lines)


def round_rows(step: int, version: int, count: int) -> list[dict[str, Any]]:
    """One round; `version` changes the answers so a re-send is visible in the stored rows."""
    epoch = step // ROUNDS_PER_EPOCH
    rows = []
    for i in range(count):
        truth = None if i % 17 == 0 else f"The answer is {i + step}."
        rows.append(
            {
                "epoch": epoch,
                "step": step,
                "sample_index": i,
                "prompt": f"Question {i}: what is {i} plus {step}?",
                "ground_truth": truth,
                "prediction": f"The answer is {i + step + (i + version) % 3}. (v{version})",
                "prompt_tokens": 9,
                "completion_tokens": 6,
                "total_tokens": 15,
                "latency_ms": 2.5,
                "max_new_tokens": 32,
                "do_sample": False,
            }
        )
    return rows


class Workload:
    """One run: `await Workload(config).run()` returns a LoadResult with its checks done."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.result = LoadResult(config)
        self.job_ids = [f"{config.job_prefix}-{n}" for n in range(config.jobs)]
        self._next_step = dict.fromkeys(self.job_ids, 1)  # step 0 stays free: no baseline here
        self._sent_at: dict[tuple[str, int], float] = {}
        self._writing = True

    def _client(self, index: int) -> AsyncFinetuneLabClient:
        url = self.config.urls[index % len(self.config.urls)]
        return AsyncFinetuneLabClient(api_key=self.config.key, base_url=url, timeout=60)

    async def _timed(self, op: str, call: Awaitable[Any]) -> Any:
        """Await `call` (a coroutine not started yet), recording its latency or its error."""
        started = time.perf_counter()
        try:
            value = await call
        except Exception as exc:
            self.result.errors.append(f"{op}: {type(exc).__name__}: {exc}")
            return None
        self.result.record(op, time.perf_counter() - started)
        return value

    # -- workers ----------------------------------------------------------------------------
    async def _writer(self, index: int, deadline: float) -> None:
        rng = random.Random(self.config.seed * 1000 + index)
        job_id = self.job_ids[index % len(self.job_ids)]
        mine: dict[int, int] = {}  # step -> version last sent
        writes = 0
        async with self._client(index) as client:
            while time.monotonic() < deadline:
                writes += 1
                resend = bool(mine) and writes % self.config.resend_every == 0
                if resend:
                    step = rng.choice(list(mine))
                    version = mine[step] + 1
                else:
                    step = self._next_step[job_id]
                    self._next_step[job_id] += 1
                    version = 0
                rows = round_rows(step, version, self.config.batch_rows)
                self._sent_at.setdefault((job_id, step), time.perf_counter())
                answer = await self._timed(
                    "ingest", client.training_predictions.create(job_id, rows)
                )
                if answer is None:
                    continue
                self.result.rows_sent += len(rows)
                created, updated = (0, len(rows)) if resend else (len(rows), 0)
                if (answer.created, answer.updated) != (created, updated):
                    self.result.errors.append(
                        f"ingest {job_id} step {step} v{version}: created/updated "
                        f"{answer.created}/{answer.updated}, expected {created}/{updated}"
                    )
                mine[step] = version
                if resend:
                    self.result.rounds_resent += 1
                else:
                    self.result.rounds_written += 1
                expected = self.result.expected[job_id]
                for row in rows:
                    expected[(step, row["sample_index"])] = (
                        row["epoch"],
                        row["prediction"],
                        row["ground_truth"],
                    )

    async def _reader(self, index: int, deadline: float) -> None:
        rng = random.Random(self.config.seed * 1000 + 500 + index)
        seen_totals: dict[str, int] = {}
        async with self._client(index + 1) as client:
            api = client.training_predictions
            while time.monotonic() < deadline:
                job_id = rng.choice(self.job_ids)
                op = rng.choice(("pages", "trends", "trends_step", "epochs"))
                if op == "pages":
                    cursor = None
                    for _ in range(3):  # the first pages through the cursor
                        page = await self._timed("page", api.get(job_id, limit=100, cursor=cursor))
                        if page is None:
                            break
                        if page.total_count < seen_totals.get(job_id, 0):
                            self.result.errors.append(
                                f"{job_id}: total_count went back from "
                                f"{seen_totals[job_id]} to {page.total_count}"
                            )
                        seen_totals[job_id] = page.total_count
                        cursor = page.next_cursor
                        if cursor is None:
                            break
                elif op == "trends":
                    await self._timed("trends", api.trends(job_id))
                elif op == "trends_step":
                    await self._timed("trends_step", api.trends(job_id, group_by="step"))
                else:
                    await self._timed("epochs", api.epochs(job_id))

    async def _stream(self, index: int, job_id: str, ready: asyncio.Event) -> None:
        """Follows one job from its first event; ids must only grow."""
        last_id = 0
        # The stream of job k goes through another process than its writers (k % n).
        async with self._client(index + 1) as client:
            async for event in client.training_predictions.stream(job_id, last_event_id=0):
                if event.event == "heartbeat":
                    ready.set()
                    continue
                if event.id <= last_id:
                    self.result.errors.append(f"stream {job_id}: id {event.id} after {last_id}")
                last_id = event.id
                self.result.stream_events += 1
                if event.event == "predictions":
                    now = time.perf_counter()
                    for round_ in event.data.rounds:
                        steps = self.result.stream_steps[job_id]
                        if round_.step not in steps:
                            steps.add(round_.step)
                            sent = self._sent_at.get((job_id, round_.step))
                            if sent is not None:
                                self.result.record("stream_lag", now - sent)

    # -- the run ------------------------------------------------------------------------------
    async def run(self, drain_timeout_s: float = 30.0) -> LoadResult:
        cfg = self.config
        async with self._client(0) as client:
            for job_id in self.job_ids:
                await client.jobs.create(id=job_id, name=f"load {job_id}")
        readies = [asyncio.Event() for _ in self.job_ids]
        streams = [
            asyncio.create_task(self._stream(n, job_id, readies[n]))
            for n, job_id in enumerate(self.job_ids)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
        started = time.monotonic()
        deadline = started + cfg.duration_s
        workers = [self._writer(n, deadline) for n in range(cfg.writers)]
        workers += [self._reader(n, deadline) for n in range(cfg.readers)]
        await asyncio.gather(*workers)
        self.result.elapsed_s = time.monotonic() - started
        # Every round written must reach its stream, however loaded the server was.
        drain_deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < drain_deadline and not self._streams_caught_up():
            await asyncio.sleep(0.1)
        for task in streams:
            task.cancel()
        for outcome in await asyncio.gather(*streams, return_exceptions=True):
            if not isinstance(outcome, asyncio.CancelledError):
                self.result.errors.append(f"stream ended: {outcome!r}")
        await self._check_stored()
        return self.result

    def _streams_caught_up(self) -> bool:
        return all(
            {step for step, _ in self.result.expected[job_id]} <= self.result.stream_steps[job_id]
            for job_id in self.job_ids
        )

    # -- checks after the run ---------------------------------------------------------------
    async def _check_stored(self) -> None:
        errors = self.result.errors
        for job_id in self.job_ids:
            expected = self.result.expected[job_id]
            missing_in_stream = {s for s, _ in expected} - self.result.stream_steps[job_id]
            if missing_in_stream:
                errors.append(f"{job_id}: rounds never streamed: {sorted(missing_in_stream)}")
            async with self._client(0) as client:
                api = client.training_predictions
                stored: dict[Key, tuple[int, str, str | None]] = {}
                async for row in api.iter(job_id, page_size=1000):
                    key = (row.step, row.sample_index)
                    if key in stored:
                        errors.append(f"{job_id}: row {key} returned twice")
                    stored[key] = (row.epoch, row.prediction, row.ground_truth)
                if stored != expected:
                    lost = len(expected.keys() - stored.keys())
                    extra = len(stored.keys() - expected.keys())
                    both = expected.keys() & stored.keys()
                    stale = sum(1 for k in both if stored[k] != expected[k])
                    errors.append(f"{job_id}: {lost} rows lost, {extra} unexpected, {stale} stale")
                page = await api.get(job_id, limit=1)
                if page.total_count != len(expected):
                    errors.append(f"{job_id}: total_count {page.total_count} != {len(expected)}")
                by_epoch = await api.trends(job_id)
                by_step = await api.trends(job_id, group_by="step")
                epochs = await api.epochs(job_id)
            self._compare_trends(job_id, "epoch", by_epoch.trends, expected, lambda e, s: e)
            self._compare_trends(job_id, "step", by_step.trends, expected, lambda e, s: s)
            want_epochs = {
                p.epoch: (p.sample_count, p.step) for p in _aggregates(expected, lambda e, s: e)
            }
            got_epochs = {e.epoch: (e.prediction_count, e.latest_step) for e in epochs.epochs}
            if got_epochs != want_epochs:
                errors.append(f"{job_id}: epochs {got_epochs} != {want_epochs}")

    def _compare_trends(
        self,
        job_id: str,
        group_by: str,
        got: list[Any],
        expected: dict[Key, tuple[int, str, str | None]],
        group: Callable[[int, int], int],
    ) -> None:
        want = _aggregates(expected, group)
        if len(got) != len(want):
            self.result.errors.append(
                f"{job_id}: trends by {group_by}: {len(got)} points, expected {len(want)}"
            )
            return
        for point, ref in zip(got, want, strict=True):
            for name in ("epoch", "step", "sample_count"):
                if getattr(point, name) != getattr(ref, name):
                    self.result.errors.append(
                        f"{job_id}: trends by {group_by} {name} {getattr(point, name)} != "
                        f"{getattr(ref, name)}"
                    )
            for name in (
                *(f"avg_{s}" for s in SCORE_NAMES),
                "min_char_error_rate",
                "max_char_error_rate",
            ):
                a, b = getattr(point, name), getattr(ref, name)
                same = a == b or (
                    a is not None and b is not None and math.isclose(a, b, abs_tol=1e-9)
                )
                if not same:
                    self.result.errors.append(
                        f"{job_id}: trends by {group_by} step {ref.step} {name} {a} != {b}"
                    )


@dataclass
class Aggregate:
    epoch: int
    step: int
    sample_count: int
    avg_exact_match: float | None
    avg_char_error_rate: float | None
    avg_length_ratio: float | None
    avg_word_overlap: float | None
    min_char_error_rate: float | None
    max_char_error_rate: float | None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _aggregates(
    rows: dict[Key, tuple[int, str, str | None]], group: Callable[[int, int], int]
) -> list[Aggregate]:
    """The aggregates of docs/OVERVIEW.md, from the rows we sent, with the shared scorer."""
    groups: dict[int, list[tuple[int, int, Any]]] = defaultdict(list)
    for (step, _), (epoch, prediction, truth) in rows.items():
        groups[group(epoch, step)].append((epoch, step, score(prediction, truth)))
    out = []
    for _, members in sorted(groups.items()):
        columns = {
            name: [s[i] for _, _, s in members if s[i] is not None]
            for i, name in enumerate(SCORE_NAMES)
        }
        cer = columns["char_error_rate"]
        out.append(
            Aggregate(
                epoch=max(e for e, _, _ in members),
                step=max(s for _, s, _ in members),
                sample_count=len(members),
                avg_exact_match=_mean(columns["exact_match"]),
                avg_char_error_rate=_mean(cer),
                avg_length_ratio=_mean(columns["length_ratio"]),
                avg_word_overlap=_mean(columns["word_overlap"]),
                min_char_error_rate=min(cer) if cer else None,
                max_char_error_rate=max(cer) if cer else None,
            )
        )
    return out


def run_load(config: LoadConfig) -> LoadResult:
    return asyncio.run(Workload(config).run())
