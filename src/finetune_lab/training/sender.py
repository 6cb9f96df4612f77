"""The background thread that moves spooled rounds to the server.

Training only ever appends a file to the spool (no network on its thread); this thread uploads
oldest first with exponential backoff while the server is unreachable. Memory stays bounded
because rounds wait on disk, not in a queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from finetune_lab.client import FinetuneLabClient
from finetune_lab.errors import FinetuneLabError
from finetune_lab.training.delivery import Outcome, mark_finished, upload
from finetune_lab.training.spool import JobSpool

logger = logging.getLogger("finetune_lab.training")

ClientFactory = Callable[[], FinetuneLabClient | None]


class BackgroundSender:
    """Delivers one job's spool; `submit` never blocks on the network and never raises."""

    def __init__(
        self,
        spool: JobSpool,
        client_factory: ClientFactory,
        *,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_memory_rows: int = 20_000,
        close_client: bool = True,
        job: dict[str, Any] | None = None,
    ) -> None:
        self.spool = spool
        self._job = job  # how to create the job, should the disk refuse the spool's job.json
        self._client_factory = client_factory
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._max_memory_rows = max_memory_rows
        self._close_client = close_client
        # Rounds the disk refused (full, read-only): kept in memory up to a bound, sent directly.
        self._memory: deque[list[dict[str, Any]]] = deque()
        self._memory_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._state_changed = threading.Condition()
        self._outcome: Outcome | None = None
        self._busy = False
        self._passes_started = self._passes_done = 0  # delivery passes, for flush()
        self._job_ready = False
        self._finished = False
        self._completed = False  # the job was marked completed: nothing more to do
        self.dropped_rows = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="finetune-lab-sender", daemon=True)
        self._thread.start()

    # -- training thread ------------------------------------------------------------------------
    def submit(self, rows: list[dict[str, Any]]) -> None:
        try:
            self.spool.append(rows)
        except OSError as exc:
            self._keep_in_memory(rows, exc)
        with self._state_changed:
            self._outcome = None
        self._wake.set()

    def _keep_in_memory(self, rows: list[dict[str, Any]], exc: OSError) -> None:
        with self._lock:
            if self._memory_rows + len(rows) > self._max_memory_rows:
                self.dropped_rows += len(rows)
                logger.error(
                    "finetune-lab: cannot spool a round (%s) and the memory buffer is full: "
                    "%d predictions dropped so far",
                    exc,
                    self.dropped_rows,
                )
                return
            self._memory.append(rows)
            self._memory_rows += len(rows)
        logger.warning("finetune-lab: cannot write the spool (%s); round kept in memory", exc)

    def pending(self) -> bool:
        with self._lock:
            in_memory = bool(self._memory)
        return in_memory or bool(self.spool.pending())

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (at most `timeout` s) until everything is delivered; True if it was."""
        deadline = time.monotonic() + timeout
        with self._state_changed:
            # Only a pass that starts after this call has seen everything submitted before it
            # (and the end of the run, when close() calls this).
            wanted = self._passes_started + 1
        self._wake.set()
        with self._state_changed:
            while True:
                settled = not self._busy and self._passes_done >= wanted
                if settled and self._outcome is not Outcome.RETRY:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._state_changed.wait(min(remaining, 0.1))
                if not self._busy and self._outcome is Outcome.RETRY:
                    self._wake.set()  # skip the backoff wait: we are about to give up anyway
        return self._outcome is Outcome.DONE and not self.pending()

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, mark the run finished, stop the thread. Undelivered rounds stay spooled."""
        self._finished = True
        try:
            self.spool.update_meta(finished=True)
        except OSError as exc:  # a full disk must not break the end of training
            logger.warning("finetune-lab: cannot record the end of the run in the spool (%s)", exc)
        delivered = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=1.0)
        return delivered

    # -- sender thread --------------------------------------------------------------------------
    def _run(self) -> None:
        client: FinetuneLabClient | None = None
        backoff = self._initial_backoff
        while True:
            self._wake.wait(timeout=None if self._outcome is not Outcome.RETRY else backoff)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._state_changed:
                self._busy = True
                self._passes_started += 1
                current = self._passes_started
            try:
                if client is None:
                    client = self._client_factory()
                outcome = self._deliver(client) if client is not None else Outcome.BLOCKED
            except Exception as exc:  # never let the thread die: rounds stay spooled
                logger.exception("finetune-lab: sender error")
                self.last_error = str(exc)
                outcome = Outcome.RETRY
            backoff = (
                self._initial_backoff
                if outcome is Outcome.DONE
                else min(backoff * 2, self._max_backoff)
            )
            with self._state_changed:
                self._busy = False
                self._outcome = outcome
                self._passes_done = current
                self._state_changed.notify_all()
        if client is not None and self._close_client:
            client.close()

    def _deliver(self, client: FinetuneLabClient) -> Outcome:
        report = upload(client, self.spool, create_job=not self._job_ready, job=self._job)
        if report.outcome is not Outcome.DONE:
            self._note_failure(report.outcome, report.error)
            return report.outcome
        self._job_ready = True
        while True:
            with self._lock:
                rows = self._memory[0] if self._memory else None
            if rows is None:
                break
            try:
                client.training_predictions.create(self.spool.job_id, rows)
            except FinetuneLabError as exc:
                self._note_failure(Outcome.RETRY, str(exc))
                return Outcome.RETRY
            with self._lock:
                self._memory.popleft()
                self._memory_rows -= len(rows)
        try:
            if not self._completed:
                self._completed = mark_finished(client, self.spool, finished=self._finished)
        except FinetuneLabError as exc:
            logger.warning("finetune-lab: could not complete job %s: %s", self.spool.job_id, exc)
        return Outcome.DONE

    def _note_failure(self, outcome: Outcome, error: str | None) -> None:
        if error != self.last_error:
            hint = "will retry" if outcome is Outcome.RETRY else "left for `finetune-lab sync`"
            logger.warning("finetune-lab: delivery failed (%s); %s", error, hint)
        self.last_error = error
