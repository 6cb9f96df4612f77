"""Serving (models, predict, batch testing, analytics) plugged into the app in one place."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel

from finetune_lab.server.db import Database
from finetune_lab.server.routes import inference
from finetune_lab.server.services.batch_worker import BatchWorker, WorkerSettings
from finetune_lab.server.services.inference import Inference
from finetune_lab.server.services.ingest_activity import IngestActivity
from finetune_lab.server.services.judge_worker import JudgeSettings, JudgeWorker
from finetune_lab.server.services.outbound import OutboundLimits
from finetune_lab.server.settings import Settings


def install(app: FastAPI, db: Database, settings: Settings) -> None:
    """The serving services on `app.state` (their routes are in routes.ROUTERS)."""
    limits = OutboundLimits(
        per_user=max(1, settings.outbound_per_user),
        per_target=max(1, settings.outbound_per_target),
        total=max(1, settings.outbound_total),
        wait_s=max(0.0, settings.outbound_wait_s),
    )
    app.state.inference = Inference(
        db,
        model_cache_size=settings.model_cache_size,
        limits=limits,
        pool_timeout_s=max(0.1, settings.outbound_pool_timeout_s),
    )
    app.state.batch_worker = BatchWorker(
        db,
        app.state.inference,
        WorkerSettings(
            lease_s=settings.batch_lease_s,
            poll_s=settings.batch_poll_s,
            parallel_runs=settings.batch_parallel_runs,
        ),
    )
    app.state.ingest_activity = IngestActivity()
    app.state.judge_worker = JudgeWorker(
        db,
        app.state.inference,
        WorkerSettings(
            lease_s=settings.batch_lease_s,
            poll_s=settings.batch_poll_s,
            parallel_runs=max(1, settings.judge_parallel_runs),
        ),
        JudgeSettings(
            attempts=max(1, settings.judge_attempts),
            backoff_s=max(0.0, settings.judge_backoff_s),
            concurrency=max(1, settings.judge_concurrency),
            max_tokens=max(1, settings.judge_max_tokens),
        ),
        app.state.stream_notifier,
        app.state.ingest_activity,
    )


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """The batch and judge workers run while the app does; on the way out they hand their runs
    back."""
    workers: list[BatchWorker] = [app.state.batch_worker, app.state.judge_worker]
    for worker in workers:
        await worker.start()
    try:
        yield
    finally:
        for worker in workers:
            await worker.stop()
        await app.state.inference.aclose()


def schema_models() -> list[tuple[type[BaseModel], Literal["validation", "serialization"]]]:
    """Models the raw-body predict route uses, for the OpenAPI components."""
    request, *responses = inference.SCHEMA_MODELS
    out: list[Any] = [(request, "validation")]
    out.extend((model, "serialization") for model in responses)
    return out
