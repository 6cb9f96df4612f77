from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from finetune_lab.schema import (
    MAX_INT,
    MAX_PAGE_LIMIT,
    CompareResponse,
    EpochsResponse,
    ExportFormat,
    GroupBy,
    IngestResult,
    JudgeStatus,
    PredictionFilters,
    PredictionMatrix,
    PredictionsPage,
    SampleHistory,
    SortKey,
    TrendsResponse,
)
from finetune_lab.server import upstream_dialect as dialect
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.deps import (
    Activity,
    Db,
    Judges,
    Notifier,
    Scoring,
    Training,
    TrainingOrJobToken,
)
from finetune_lab.server.notify import StreamNotifier
from finetune_lab.server.responses import JSONBytesResponse
from finetune_lab.server.services import export, ingest, judge_status, matrix, queries
from finetune_lab.server.services.ingest_activity import IngestActivity
from finetune_lab.server.services.judge_worker import JudgeWorker
from finetune_lab.server.services.scoring_pool import ScoringPool
from finetune_lab.server.upstream_dialect import UpstreamClient

router = APIRouter(prefix="/api/training/predictions", tags=["predictions"])
#: The original project's SDKs post training predictions here (with a job token).
upstream_router = APIRouter(prefix="/api/training/local", tags=["predictions"])


@router.post(
    "/{job_id}",
    response_model=IngestResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictionsBatch"}}
            },
        }
    },
)
async def create_predictions(
    request: Request,
    job_id: str,
    principal: TrainingOrJobToken,
    db: Db,
    scoring: Scoring,
    notifier: Notifier,
    activity: Activity,
    judge_worker: Judges,
) -> JSONBytesResponse:
    """Store a batch (≤ 5,000 items): scored, validated and upserted in one transaction."""
    body = await request.body()  # BodySizeLimit has already capped it
    deps = (principal, db, scoring, notifier, activity, judge_worker)
    return JSONBytesResponse(await _store(job_id, body, *deps))


@upstream_router.post("/predictions", include_in_schema=False)
async def create_predictions_upstream(
    request: Request,
    principal: TrainingOrJobToken,
    db: Db,
    scoring: Scoring,
    notifier: Notifier,
    activity: Activity,
    judge_worker: Judges,
) -> JSONBytesResponse:
    """The original project's SDKs' `trainingPredictions.create` (see "Upstream answers")."""
    # Off the event loop, as our own ingest parses: a body near the cap takes a while.
    job_id, body = await run_in_threadpool(dialect.ingest_body, await request.body())
    deps = (principal, db, scoring, notifier, activity, judge_worker)
    result = await _store(job_id, body, *deps)
    return JSONBytesResponse({"success": True, "count": result["accepted"]})


async def _store(
    job_id: str,
    body: bytes,
    principal: Principal,
    db: Database,
    scoring: ScoringPool,
    notifier: StreamNotifier,
    activity: IngestActivity,
    judge_worker: JudgeWorker,
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        return ingest.ingest(db, principal, job_id, ingest.parse_batch(body), scoring)

    with activity.active():  # judges hold back meanwhile
        result = await run_in_threadpool(work)
    if result.pop(ingest.JUDGES_QUEUED, False):
        judge_worker.wake()
    notifier.publish(job_id)  # committed: wake this process's streams
    return result


@router.get("/{job_id}", response_model=PredictionsPage)
def list_predictions(
    job_id: str,
    epoch: int | None = Query(None, ge=0, le=MAX_INT),
    step: int | None = Query(None, ge=0, le=MAX_INT),
    sample_index: int | None = Query(None, ge=0, le=MAX_INT),
    prompt_id: str | None = Query(None, max_length=256, pattern=r"^[^\x00]*$"),
    validation_pass: bool | None = None,
    q: str | None = Query(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00]*$",
        description="Case-insensitive text in the prompt, prediction or ground truth",
    ),
    sort: SortKey | None = Query(
        None,
        description="Order by a score (ascending; '-' for descending; nulls last), then the "
        "default order. Sorted pages use offset: next_cursor is null and cursor is refused",
    ),
    limit: int = Query(50, ge=1, le=MAX_PAGE_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_INT),
    cursor: str | None = Query(None, max_length=512),
    *,
    upstream: UpstreamClient,
    principal: Training,
    db: Db,
) -> JSONBytesResponse:
    filters = PredictionFilters(epoch, step, sample_index, prompt_id, validation_pass, q)
    page = queries.list_predictions(
        db, principal, job_id, filters, limit=limit, offset=offset, cursor=cursor, sort=sort
    )
    return JSONBytesResponse(dialect.predictions_page(page) if upstream else page)


@router.get("/{job_id}/epochs", response_model=EpochsResponse)
def epochs(job_id: str, principal: Training, db: Db) -> JSONBytesResponse:
    return JSONBytesResponse(queries.epochs(db, principal, job_id))


@router.get("/{job_id}/trends", response_model=TrendsResponse)
def trends(
    job_id: str,
    group_by: GroupBy = "epoch",
    *,
    principal: Training,
    db: Db,
) -> JSONBytesResponse:
    return JSONBytesResponse(queries.trends(db, principal, job_id, group_by=group_by))


@router.get("/{job_id}/matrix", response_model=PredictionMatrix)
def prediction_matrix(
    job_id: str,
    metric: str = Query(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00]*$",
        description="exact_match, char_error_rate, length_ratio, word_overlap, validation_pass "
        "(1/0), or a custom metric of this job (metrics.<name> for one named like a built-in)",
    ),
    limit: int = Query(100, ge=1, le=MAX_PAGE_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_INT),
    *,
    principal: Training,
    db: Db,
) -> JSONBytesResponse:
    """One score of a page of samples (by sample_index) in every round: rows by rounds."""
    return JSONBytesResponse(
        matrix.matrix(db, principal, job_id, metric, limit=limit, offset=offset)
    )


@router.get("/{job_id}/judges", response_model=JudgeStatus)
def judges(
    job_id: str,
    limit: int = Query(50, ge=1, le=MAX_PAGE_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_INT),
    *,
    principal: Training,
    db: Db,
) -> JSONBytesResponse:
    """Model-graded scores: each judge's graded / failed / pending rows, the grading runs by
    status, and a page of failed rows with the judge's answer and the reason."""
    return JSONBytesResponse(
        judge_status.judge_status(db, principal, job_id, limit=limit, offset=offset)
    )


@router.get("/{job_id}/samples/{sample_index}", response_model=SampleHistory)
def sample_history(
    job_id: str,
    sample_index: int = Path(ge=0, le=MAX_INT),
    *,
    principal: Training,
    db: Db,
) -> JSONBytesResponse:
    return JSONBytesResponse(queries.sample_history(db, principal, job_id, sample_index))


@router.get("/{job_id}/compare", response_model=CompareResponse)
def compare(
    job_id: str,
    from_epoch: int = Query(ge=0, le=MAX_INT),
    to_epoch: int = Query(ge=0, le=MAX_INT),
    to_job: str | None = None,
    *,
    principal: Training,
    db: Db,
) -> JSONBytesResponse:
    """`to_job`: take the "to" side from another of the caller's jobs."""
    return JSONBytesResponse(
        queries.compare(db, principal, job_id, from_epoch, to_epoch, to_job=to_job)
    )


@router.get(
    "/{job_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {media: {} for media in export.MEDIA_TYPES.values()}}},
)
def export_predictions(
    job_id: str,
    format: ExportFormat = "jsonl",
    epoch: int | None = Query(None, ge=0, le=MAX_INT),
    step: int | None = Query(None, ge=0, le=MAX_INT),
    *,
    principal: Training,
    db: Db,
) -> StreamingResponse:
    queries.ensure_owned(db, principal, job_id)
    filters = PredictionFilters(epoch=epoch, step=step)
    filename = "".join(c if c.isalnum() or c in "._-" else "_" for c in job_id) + f".{format}"
    return StreamingResponse(
        export.export_stream(db, principal.user_id, job_id, filters, format),
        media_type=export.MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
