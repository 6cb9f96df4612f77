"""Typed route dependencies: everything a route may ask for, read from the app in one place.

Routes declare `db: Db` or `principal: Training` instead of `Depends(...)` calls and untyped
`request.app.state` reads, so the type checker sees what a handler gets and a rename of an
app attribute breaks here, not at request time. `create_app` sets the attributes read here.

The readers are async on purpose: a sync dependency costs a thread hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from finetune_lab.server.auth import Authenticator, Principal, current_principal, require_scope
from finetune_lab.server.db import Database
from finetune_lab.server.notify import PostgresListener, StreamNotifier
from finetune_lab.server.responses import get_db  # defined there: services import that module
from finetune_lab.server.services.batch_worker import BatchWorker
from finetune_lab.server.services.inference import Inference
from finetune_lab.server.services.ingest_activity import IngestActivity
from finetune_lab.server.services.judge_worker import JudgeWorker
from finetune_lab.server.services.scoring_pool import ScoringPool
from finetune_lab.server.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


async def get_scoring_pool(request: Request) -> ScoringPool:
    pool: ScoringPool = request.app.state.scoring_pool
    return pool


async def get_stream_notifier(request: Request) -> StreamNotifier:
    notifier: StreamNotifier = request.app.state.stream_notifier
    return notifier


async def get_stream_listener(request: Request) -> PostgresListener | None:
    """The PostgreSQL LISTEN connection; None on SQLite (wake-ups stay in-process)."""
    listener: PostgresListener | None = request.app.state.stream_listener
    return listener


async def get_inference(request: Request) -> Inference:
    inference: Inference = request.app.state.inference
    return inference


async def get_batch_worker(request: Request) -> BatchWorker:
    worker: BatchWorker = request.app.state.batch_worker
    return worker


async def get_ingest_activity(request: Request) -> IngestActivity:
    activity: IngestActivity = request.app.state.ingest_activity
    return activity


async def get_judge_worker(request: Request) -> JudgeWorker:
    worker: JudgeWorker = request.app.state.judge_worker
    return worker


Db = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings)]
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]
Scoring = Annotated[ScoringPool, Depends(get_scoring_pool)]
Notifier = Annotated[StreamNotifier, Depends(get_stream_notifier)]
Listener = Annotated[PostgresListener | None, Depends(get_stream_listener)]
InferenceDep = Annotated[Inference, Depends(get_inference)]
Worker = Annotated[BatchWorker, Depends(get_batch_worker)]
Activity = Annotated[IngestActivity, Depends(get_ingest_activity)]
Judges = Annotated[JudgeWorker, Depends(get_judge_worker)]

# The caller, admitted by the credential gate, with the scope each route family needs. Each is
# built once here: FastAPI caches a dependency per request by its function.
AnyPrincipal = Annotated[Principal, Depends(current_principal)]
Training = Annotated[Principal, Depends(require_scope("training"))]
TrainingOrJobToken = Annotated[Principal, Depends(require_scope("training", job_token_ok=True))]
Production = Annotated[Principal, Depends(require_scope("production"))]
Testing = Annotated[Principal, Depends(require_scope("testing"))]
