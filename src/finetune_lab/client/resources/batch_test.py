"""`client.batch_test`: run a test suite against a model in the background, follow it, read
its scored results, or cancel it."""

from __future__ import annotations

import time
from typing import Any

import anyio

from finetune_lab.client._transport import (
    AsyncTransport,
    RequestSpec,
    SyncTransport,
    parse_model,
    path_segment,
)
from finetune_lab.schema_serving import (
    BatchResults,
    BatchRunsList,
    BatchRunStarted,
    BatchRunStatus,
)

_PREFIX = "/api/batch-testing"
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


def _run_spec(
    model_id: str,
    test_suite_id: str,
    prompt_limit: int | None,
    concurrency: int | None,
    temperature: float | None,
    max_tokens: int | None,
) -> RequestSpec[BatchRunStarted]:
    config: dict[str, Any] = {"model_id": model_id, "test_suite_id": test_suite_id}
    for name, value in (
        ("prompt_limit", prompt_limit),
        ("concurrency", concurrency),
        ("temperature", temperature),
        ("max_tokens", max_tokens),
    ):
        if value is not None:
            config[name] = value
    return RequestSpec(
        "POST", f"{_PREFIX}/run", parse_model(BatchRunStarted), json={"config": config}
    )


def _status_spec(run_id: str) -> RequestSpec[BatchRunStatus]:
    path = f"{_PREFIX}/status/{path_segment(run_id)}"
    return RequestSpec("GET", path, parse_model(BatchRunStatus))


def _results_spec(run_id: str, limit: int, offset: int) -> RequestSpec[BatchResults]:
    path = f"{_PREFIX}/results/{path_segment(run_id)}"
    params = {"limit": limit, "offset": offset}
    return RequestSpec("GET", path, parse_model(BatchResults), params=params)


def _cancel_spec(run_id: str) -> RequestSpec[BatchRunStatus]:
    # Cancelling twice is harmless to intent (the second is a 409), so a retry is safe.
    return RequestSpec(
        "POST",
        f"{_PREFIX}/cancel",
        parse_model(BatchRunStatus),
        json={"test_run_id": run_id},
        idempotent=True,
    )


def _runs_spec(limit: int) -> RequestSpec[BatchRunsList]:
    params = {"limit": limit}
    return RequestSpec("GET", f"{_PREFIX}/runs", parse_model(BatchRunsList), params=params)


class BatchTest:
    """Sync access to `/api/batch-testing`."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def run(
        self,
        model_id: str,
        test_suite_id: str,
        *,
        prompt_limit: int | None = None,
        concurrency: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> BatchRunStarted:
        """Queue a run (model and suite by id or name); it starts at once in the background."""
        spec = _run_spec(
            model_id, test_suite_id, prompt_limit, concurrency, temperature, max_tokens
        )
        return self._transport.execute(spec)

    def status(self, test_run_id: str) -> BatchRunStatus:
        return self._transport.execute(_status_spec(test_run_id))

    def results(self, test_run_id: str, *, limit: int = 100, offset: int = 0) -> BatchResults:
        return self._transport.execute(_results_spec(test_run_id, limit, offset))

    def cancel(self, test_run_id: str) -> BatchRunStatus:
        return self._transport.execute(_cancel_spec(test_run_id))

    def list(self, *, limit: int = 20) -> BatchRunsList:
        """Your latest runs, newest first."""
        return self._transport.execute(_runs_spec(limit))

    def wait(
        self, test_run_id: str, *, timeout: float = 600.0, poll_interval: float = 0.5
    ) -> BatchRunStatus:
        """Poll until the run is completed, failed or cancelled; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(test_run_id)
            if status.status in FINAL_STATUSES:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"test run {test_run_id} is still {status.status}")
            time.sleep(poll_interval)


class AsyncBatchTest:
    """Async access to `/api/batch-testing`; same methods as `BatchTest`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def run(
        self,
        model_id: str,
        test_suite_id: str,
        *,
        prompt_limit: int | None = None,
        concurrency: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> BatchRunStarted:
        """Queue a run (model and suite by id or name); it starts at once in the background."""
        spec = _run_spec(
            model_id, test_suite_id, prompt_limit, concurrency, temperature, max_tokens
        )
        return await self._transport.execute(spec)

    async def status(self, test_run_id: str) -> BatchRunStatus:
        return await self._transport.execute(_status_spec(test_run_id))

    async def results(self, test_run_id: str, *, limit: int = 100, offset: int = 0) -> BatchResults:
        return await self._transport.execute(_results_spec(test_run_id, limit, offset))

    async def cancel(self, test_run_id: str) -> BatchRunStatus:
        return await self._transport.execute(_cancel_spec(test_run_id))

    async def list(self, *, limit: int = 20) -> BatchRunsList:
        """Your latest runs, newest first."""
        return await self._transport.execute(_runs_spec(limit))

    async def wait(
        self, test_run_id: str, *, timeout: float = 600.0, poll_interval: float = 0.5
    ) -> BatchRunStatus:
        """Poll until the run is completed, failed or cancelled; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.status(test_run_id)
            if status.status in FINAL_STATUSES:
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"test run {test_run_id} is still {status.status}")
            await anyio.sleep(poll_interval)


__all__ = ["AsyncBatchTest", "BatchTest"]
