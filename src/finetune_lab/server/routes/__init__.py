"""HTTP routes, thin: parse and check the request, call a service, shape the answer.

`ROUTERS` is the one list the app includes, in this order (the training half, then serving).
"""

from __future__ import annotations

from fastapi import APIRouter

from finetune_lab.server.routes import (
    analytics,
    auth,
    batch_testing,
    health,
    inference,
    jobs,
    models,
    otlp,
    predictions,
    stream,
)

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    auth.router,
    jobs.router,
    predictions.router,
    predictions.upstream_router,
    stream.router,
    models.router,
    inference.router,
    batch_testing.suites_router,
    batch_testing.runs_router,
    analytics.router,
    otlp.router,
)
