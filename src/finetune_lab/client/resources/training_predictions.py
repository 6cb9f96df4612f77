"""`client.training_predictions`: browse, aggregate and stream a job's predictions.

Module-level `_*_spec` functions describe each call once; `TrainingPredictions` and
`AsyncTrainingPredictions` only execute them, so both clients send exactly the same requests.
Bulk ingest, import and export live in `_prediction_files`; paging and streaming are driven by
the shared flows of `_pagination` and `_streaming`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING

from finetune_lab.client._frames import predictions_frame, require_pandas
from finetune_lab.client._pagination import (
    CursorWalk,
    OffsetWalk,
    PageWalk,
    aiter_rows,
    iter_rows,
)
from finetune_lab.client._streaming import DEFAULT_MAX_RECONNECTS, aiter_events, iter_events
from finetune_lab.client._transport import AsyncTransport, RequestSpec, SyncTransport, parse_model
from finetune_lab.client.gate import GateResult, evaluate_gate, gate_spec
from finetune_lab.client.resources._prediction_events import (
    STREAM_EVENT_MODELS,
    StreamEvent,
    stream_flow,
)
from finetune_lab.client.resources._prediction_files import (
    AsyncPredictionFiles,
    ImportProgress,
    PredictionFiles,
    PredictionItem,
    predictions_path,
)
from finetune_lab.schema import (
    CompareResponse,
    EpochsResponse,
    ExportFormat,
    GroupBy,
    JudgeStatus,
    Prediction,
    PredictionFilters,
    PredictionMatrix,
    PredictionsPage,
    SampleHistory,
    SortKey,
    TrendsResponse,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_MAX_RECONNECTS",
    "STREAM_EVENT_MODELS",
    "AsyncTrainingPredictions",
    "ExportFormat",
    "GroupBy",
    "ImportProgress",
    "PredictionItem",
    "SortKey",
    "StreamEvent",
    "TrainingPredictions",
]

_path = predictions_path


def _page_spec(
    job_id: str,
    filters: PredictionFilters,
    *,
    limit: int,
    offset: int,
    cursor: str | None,
    sort: SortKey | None = None,
) -> RequestSpec[PredictionsPage]:
    params = {**asdict(filters), "limit": limit, "offset": offset, "cursor": cursor, "sort": sort}
    return RequestSpec("GET", _path(job_id), parse_model(PredictionsPage), params=params)


def _walk(
    job_id: str, filters: PredictionFilters, page_size: int, sort: SortKey | None = None
) -> PageWalk[PredictionsPage, Prediction]:
    """Every row: through the cursor in read order; by offset in a `sort` order (the server
    gives sorted pages no cursor)."""
    if sort is None:

        def after(cursor: str | None) -> RequestSpec[PredictionsPage]:
            return _page_spec(job_id, filters, limit=page_size, offset=0, cursor=cursor)

        return CursorWalk(after, lambda page: page.predictions)

    def at(offset: int) -> RequestSpec[PredictionsPage]:
        return _page_spec(job_id, filters, limit=page_size, offset=offset, cursor=None, sort=sort)

    return OffsetWalk(at, lambda page: page.predictions)


def _epochs_spec(job_id: str) -> RequestSpec[EpochsResponse]:
    return RequestSpec("GET", _path(job_id, "epochs"), parse_model(EpochsResponse))


def _trends_spec(job_id: str, group_by: GroupBy) -> RequestSpec[TrendsResponse]:
    return RequestSpec(
        "GET", _path(job_id, "trends"), parse_model(TrendsResponse), params={"group_by": group_by}
    )


def _sample_spec(job_id: str, sample_index: int) -> RequestSpec[SampleHistory]:
    return RequestSpec("GET", _path(job_id, "samples", sample_index), parse_model(SampleHistory))


def _compare_spec(
    job_id: str, from_epoch: int, to_epoch: int, to_job: str | None
) -> RequestSpec[CompareResponse]:
    return RequestSpec(
        "GET",
        _path(job_id, "compare"),
        parse_model(CompareResponse),
        params={"from_epoch": from_epoch, "to_epoch": to_epoch, "to_job": to_job},
    )


def _matrix_spec(
    job_id: str, metric: str, limit: int, offset: int
) -> RequestSpec[PredictionMatrix]:
    return RequestSpec(
        "GET",
        _path(job_id, "matrix"),
        parse_model(PredictionMatrix),
        params={"metric": metric, "limit": limit, "offset": offset},
    )


def _judges_spec(job_id: str, limit: int, offset: int) -> RequestSpec[JudgeStatus]:
    params = {"limit": limit, "offset": offset}
    return RequestSpec("GET", _path(job_id, "judges"), parse_model(JudgeStatus), params=params)


class TrainingPredictions(PredictionFiles):
    """Sync access to `/api/training/predictions`."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def get(
        self,
        job_id: str,
        *,
        epoch: int | None = None,
        step: int | None = None,
        sample_index: int | None = None,
        prompt_id: str | None = None,
        validation_pass: bool | None = None,
        q: str | None = None,
        sort: SortKey | None = None,
        limit: int = 50,
        offset: int = 0,
        cursor: str | None = None,
    ) -> PredictionsPage:
        """One page of predictions in `epoch, step, sample_index` order (or by a score with
        `sort`, e.g. "-char_error_rate"; sorted pages use `offset`). `q` searches the texts."""
        filters = PredictionFilters(epoch, step, sample_index, prompt_id, validation_pass, q)
        spec = _page_spec(job_id, filters, limit=limit, offset=offset, cursor=cursor, sort=sort)
        return self._transport.execute(spec)

    def iter(
        self,
        job_id: str,
        *,
        epoch: int | None = None,
        step: int | None = None,
        sample_index: int | None = None,
        prompt_id: str | None = None,
        validation_pass: bool | None = None,
        q: str | None = None,
        sort: SortKey | None = None,
        page_size: int = 500,
    ) -> Iterator[Prediction]:
        """Every matching prediction, fetched page by page: through the cursor in read order
        (constant cost per page), or by offset in a `sort` order (e.g. "-char_error_rate")."""
        filters = PredictionFilters(epoch, step, sample_index, prompt_id, validation_pass, q)
        return iter_rows(self._transport, _walk(job_id, filters, page_size, sort))

    def to_pandas(
        self,
        job_id: str,
        *,
        epoch: int | None = None,
        step: int | None = None,
        sample_index: int | None = None,
        prompt_id: str | None = None,
        validation_pass: bool | None = None,
        q: str | None = None,
        sort: SortKey | None = None,
        page_size: int = 500,
    ) -> pd.DataFrame:
        """The rows of `iter()` (same filters; with `sort`, in that order) as a DataFrame: one
        column per field, each custom metric as a float column `metrics.<name>`,
        `validation_errors` as lists of dicts. Needs the `pandas` extra
        (`pip install 'finetune-lab[pandas]'`)."""
        require_pandas()  # before any request: a missing extra fails fast
        filters = PredictionFilters(epoch, step, sample_index, prompt_id, validation_pass, q)
        return predictions_frame(
            iter_rows(self._transport, _walk(job_id, filters, page_size, sort))
        )

    def epochs(self, job_id: str) -> EpochsResponse:
        """Per-epoch counts: `epoch`, `prediction_count`, `latest_step`, ascending."""
        return self._transport.execute(_epochs_spec(job_id))

    def trends(self, job_id: str, *, group_by: GroupBy = "epoch") -> TrendsResponse:
        """Score averages per epoch (or per round with `group_by="step"`), the overall change
        and the best round per score."""
        return self._transport.execute(_trends_spec(job_id, group_by))

    def gate(
        self,
        job_id: str,
        *,
        min: Mapping[str, float] | None = None,
        max: Mapping[str, float] | None = None,
        epoch: int | None = None,
        step: int | None = None,
    ) -> GateResult:
        """Does a round meet the thresholds? `min={metric: t}` needs value >= t, `max` <= t;
        metrics: the four scores, `validation_pass_rate` and custom metrics by name. Judges the
        latest round, the last round of `epoch`, or the round at `step`. A metric without a value
        in that round fails its check. Bad arguments or an unknown metric → ValidationError; no
        such round → NotFoundError (both before any verdict)."""
        spec = gate_spec(min, max, epoch, step)
        return evaluate_gate(self._transport.execute(_trends_spec(job_id, "step")), spec)

    def sample(self, job_id: str, sample_index: int) -> SampleHistory:
        """One prompt's answer in every round: how it evolved over training."""
        return self._transport.execute(_sample_spec(job_id, sample_index))

    def compare(
        self, job_id: str, *, from_epoch: int, to_epoch: int, to_job: str | None = None
    ) -> CompareResponse:
        """Which samples improved, regressed or stayed the same between two epochs; with
        `to_job`, `to_epoch` is an epoch of that (your own) job, samples matched by prompt_id
        (else sample_index) and `unmatched` counting those without a partner."""
        return self._transport.execute(_compare_spec(job_id, from_epoch, to_epoch, to_job))

    def matrix(
        self, job_id: str, *, metric: str, limit: int = 100, offset: int = 0
    ) -> PredictionMatrix:
        """One score (a built-in, `validation_pass` as 1/0, or a custom metric) of a page of
        samples, ordered by sample_index, in every round: `samples[i].values[j]` is round j."""
        return self._transport.execute(_matrix_spec(job_id, metric, limit, offset))

    def judges(self, job_id: str, *, limit: int = 50, offset: int = 0) -> JudgeStatus:
        """The job's judges (model-graded `judge:<name>` metrics): graded / failed / pending
        rows per judge, grading runs by status, and a page of failed rows with the reason."""
        return self._transport.execute(_judges_spec(job_id, limit, offset))

    def stream(
        self,
        job_id: str,
        *,
        last_event_id: int | None = None,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> Iterator[StreamEvent]:
        """Live events of a job (Server-Sent Events), forever: break out of the loop to stop.

        Starts after `last_event_id` (replaying what came after it), else at the job's newest
        event. A lost connection, 429 or 5xx is retried (after the server's Retry-After, else
        with backoff) and resumed from the last event received, so nothing is missed or
        repeated; after `max_reconnects` failed attempts in a row the error is raised.
        """
        flow = stream_flow(job_id, last_event_id, max_reconnects)
        return iter_events(self._transport, flow)


class AsyncTrainingPredictions(AsyncPredictionFiles):
    """Async access to `/api/training/predictions`; same methods as `TrainingPredictions`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def get(
        self,
        job_id: str,
        *,
        epoch: int | None = None,
        step: int | None = None,
        sample_index: int | None = None,
        prompt_id: str | None = None,
        validation_pass: bool | None = None,
        q: str | None = None,
        sort: SortKey | None = None,
        limit: int = 50,
        offset: int = 0,
        cursor: str | None = None,
    ) -> PredictionsPage:
        """One page of predictions in `epoch, step, sample_index` order (or by a score with
        `sort`, e.g. "-char_error_rate"; sorted pages use `offset`). `q` searches the texts."""
        filters = PredictionFilters(epoch, step, sample_index, prompt_id, validation_pass, q)
        spec = _page_spec(job_id, filters, limit=limit, offset=offset, cursor=cursor, sort=sort)
        return await self._transport.execute(spec)

    def iter(
        self,
        job_id: str,
        *,
        epoch: int | None = None,
        step: int | None = None,
        sample_index: int | None = None,
        prompt_id: str | None = None,
        validation_pass: bool | None = None,
        q: str | None = None,
        sort: SortKey | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[Prediction]:
        """Every matching prediction, fetched page by page: through the cursor in read order
        (constant cost per page), or by offset in a `sort` order (e.g. "-char_error_rate")."""
        filters = PredictionFilters(epoch, step, sample_index, prompt_id, validation_pass, q)
        return aiter_rows(self._transport, _walk(job_id, filters, page_size, sort))

    async def to_pandas(
        self,
        job_id: str,
        *,
        epoch: int | None = None,
        step: int | None = None,
        sample_index: int | None = None,
        prompt_id: str | None = None,
        validation_pass: bool | None = None,
        q: str | None = None,
        sort: SortKey | None = None,
        page_size: int = 500,
    ) -> pd.DataFrame:
        """The rows of `iter()` (same filters; with `sort`, in that order) as a DataFrame: one
        column per field, each custom metric as a float column `metrics.<name>`,
        `validation_errors` as lists of dicts. Needs the `pandas` extra
        (`pip install 'finetune-lab[pandas]'`)."""
        require_pandas()  # before any request: a missing extra fails fast
        filters = PredictionFilters(epoch, step, sample_index, prompt_id, validation_pass, q)
        rows = aiter_rows(self._transport, _walk(job_id, filters, page_size, sort))
        return predictions_frame([prediction async for prediction in rows])

    async def epochs(self, job_id: str) -> EpochsResponse:
        """Per-epoch counts: `epoch`, `prediction_count`, `latest_step`, ascending."""
        return await self._transport.execute(_epochs_spec(job_id))

    async def trends(self, job_id: str, *, group_by: GroupBy = "epoch") -> TrendsResponse:
        """Score averages per epoch (or per round with `group_by="step"`), the overall change
        and the best round per score."""
        return await self._transport.execute(_trends_spec(job_id, group_by))

    async def gate(
        self,
        job_id: str,
        *,
        min: Mapping[str, float] | None = None,
        max: Mapping[str, float] | None = None,
        epoch: int | None = None,
        step: int | None = None,
    ) -> GateResult:
        """Does a round meet the thresholds? `min={metric: t}` needs value >= t, `max` <= t;
        metrics: the four scores, `validation_pass_rate` and custom metrics by name. Judges the
        latest round, the last round of `epoch`, or the round at `step`. A metric without a value
        in that round fails its check. Bad arguments or an unknown metric → ValidationError; no
        such round → NotFoundError (both before any verdict)."""
        spec = gate_spec(min, max, epoch, step)
        return evaluate_gate(await self._transport.execute(_trends_spec(job_id, "step")), spec)

    async def sample(self, job_id: str, sample_index: int) -> SampleHistory:
        """One prompt's answer in every round: how it evolved over training."""
        return await self._transport.execute(_sample_spec(job_id, sample_index))

    async def compare(
        self, job_id: str, *, from_epoch: int, to_epoch: int, to_job: str | None = None
    ) -> CompareResponse:
        """Which samples improved, regressed or stayed the same between two epochs; with
        `to_job`, `to_epoch` is an epoch of that (your own) job, samples matched by prompt_id
        (else sample_index) and `unmatched` counting those without a partner."""
        return await self._transport.execute(_compare_spec(job_id, from_epoch, to_epoch, to_job))

    async def matrix(
        self, job_id: str, *, metric: str, limit: int = 100, offset: int = 0
    ) -> PredictionMatrix:
        """One score (a built-in, `validation_pass` as 1/0, or a custom metric) of a page of
        samples, ordered by sample_index, in every round: `samples[i].values[j]` is round j."""
        return await self._transport.execute(_matrix_spec(job_id, metric, limit, offset))

    async def judges(self, job_id: str, *, limit: int = 50, offset: int = 0) -> JudgeStatus:
        """The job's judges (model-graded `judge:<name>` metrics): graded / failed / pending
        rows per judge, grading runs by status, and a page of failed rows with the reason."""
        return await self._transport.execute(_judges_spec(job_id, limit, offset))

    def stream(
        self,
        job_id: str,
        *,
        last_event_id: int | None = None,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> AsyncIterator[StreamEvent]:
        """Live events of a job (Server-Sent Events), forever: break out of the loop to stop.

        Starts after `last_event_id` (replaying what came after it), else at the job's newest
        event. A lost connection, 429 or 5xx is retried (after the server's Retry-After, else
        with backoff) and resumed from the last event received, so nothing is missed or
        repeated; after `max_reconnects` failed attempts in a row the error is raised.
        """
        flow = stream_flow(job_id, last_event_id, max_reconnects)
        return aiter_events(self._transport, flow)
