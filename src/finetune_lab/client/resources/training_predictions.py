"""`client.training_predictions`: ingest, browse, aggregate and export a job's predictions.

Module-level `_*_spec` functions describe each call once; `TrainingPredictions` and
`AsyncTrainingPredictions` only execute them, so both clients send exactly the same requests.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

import anyio.to_thread
import httpx
import orjson
from pydantic import BaseModel

from finetune_lab.client import _transport
from finetune_lab.client._frames import predictions_frame, require_pandas
from finetune_lab.client._import_file import ImportFormat, read_predictions
from finetune_lab.client._sse import ServerSentEvent, SSEDecoder
from finetune_lab.client._transport import (
    AsyncTransport,
    RequestSpec,
    SyncTransport,
    backoff_delay,
    map_transport_error,
    parse_bytes,
    parse_model,
    path_segment,
)
from finetune_lab.client.gate import GateResult, evaluate_gate, gate_spec
from finetune_lab.errors import (
    APIConnectionError,
    APITimeoutError,
    InternalServerError,
    RateLimitError,
    ValidationError,
)
from finetune_lab.schema import (
    MAX_BATCH_ITEMS,
    MAX_BODY_BYTES,
    CompareResponse,
    EpochsResponse,
    HeartbeatEvent,
    IngestResult,
    JudgeStatus,
    Prediction,
    PredictionIn,
    PredictionMatrix,
    PredictionsEvent,
    PredictionsPage,
    RoundCompleteEvent,
    SampleHistory,
    TrendsResponse,
    WireModel,
)

if TYPE_CHECKING:
    import pandas as pd

ExportFormat: TypeAlias = Literal["jsonl", "csv", "parquet"]
GroupBy: TypeAlias = Literal["epoch", "step"]
SortKey: TypeAlias = Literal[
    "exact_match",
    "-exact_match",
    "char_error_rate",
    "-char_error_rate",
    "word_overlap",
    "-word_overlap",
    "length_ratio",
    "-length_ratio",
]
PredictionItem: TypeAlias = PredictionIn | Mapping[str, Any]

ImportProgress: TypeAlias = Callable[[int, int], None]

_PREFIX = "/api/training/predictions"
# Room for the `{"predictions":[...]}` wrapper and separators under the server's body limit.
_BODY_BUDGET = MAX_BODY_BYTES - 64 * 1024
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY  # training loops often hand us numpy scalars


def _path(job_id: str, *rest: str | int) -> str:
    return "/".join([_PREFIX, path_segment(job_id), *(path_segment(part) for part in rest)])


@dataclass(frozen=True)
class _Filters:
    """The row filters shared by `get`, `iter` (and the server's list endpoint)."""

    epoch: int | None = None
    step: int | None = None
    sample_index: int | None = None
    prompt_id: str | None = None
    validation_pass: bool | None = None
    q: str | None = None


def _page_spec(
    job_id: str,
    filters: _Filters,
    *,
    limit: int,
    offset: int,
    cursor: str | None,
    sort: SortKey | None = None,
) -> RequestSpec[PredictionsPage]:
    params = {**asdict(filters), "limit": limit, "offset": offset, "cursor": cursor, "sort": sort}
    return RequestSpec("GET", _path(job_id), parse_model(PredictionsPage), params=params)


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


def _export_spec(
    job_id: str, format: ExportFormat, epoch: int | None, step: int | None
) -> RequestSpec[bytes]:
    params = {"format": format, "epoch": epoch, "step": step}
    return RequestSpec("GET", _path(job_id, "export"), parse_bytes, params=params)


def _export_target(job_id: str, format: str, path: str | os.PathLike[str]) -> Path:
    """`path` as given, or `<dir>/<job_id>.<format>` when it names an existing directory."""
    target = Path(path)
    if target.is_dir():
        target = target / f"{job_id}.{format}"
    return target


def _plain(item: PredictionItem) -> Any:
    if type(item) is dict:  # the common case, checked first: this runs once per prediction
        return item
    if isinstance(item, BaseModel):
        return item.model_dump(mode="json", exclude_unset=True)
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"predictions must be PredictionIn or mappings, got {type(item).__name__}")


def _encode_batches(items: list[Any], start: int) -> Iterator[tuple[int, bytes]]:
    """One body per batch, encoded in a single call (16x faster than item by item); a batch
    over the server's body limit is split in halves until each half fits."""
    body = orjson.dumps({"predictions": items}, option=_ORJSON_OPTIONS)
    if len(body) <= _BODY_BUDGET or len(items) == 1:
        yield start, body
        return
    half = len(items) // 2
    yield from _encode_batches(items[:half], start)
    yield from _encode_batches(items[half:], start + half)


def _ingest_specs(
    job_id: str, predictions: Sequence[PredictionItem], chunk_size: int
) -> Iterator[tuple[int, RequestSpec[IngestResult]]]:
    """Split into batches the server accepts (≤ chunk_size items, under the body-size limit).

    Yields `(index of the batch's first item, spec)`; encoding happens lazily, batch by batch,
    so a huge list never sits in memory twice. Ingest is an upsert, hence safe to retry.
    """
    if not 1 <= chunk_size <= MAX_BATCH_ITEMS:
        raise ValueError(f"chunk_size must be between 1 and {MAX_BATCH_ITEMS}")
    path = _path(job_id)
    parse = parse_model(IngestResult)
    # Always at least one request: an empty list still asks the server (which checks the job).
    for chunk_start in range(0, max(len(predictions), 1), chunk_size):
        items = [_plain(item) for item in predictions[chunk_start : chunk_start + chunk_size]]
        for start, body in _encode_batches(items, chunk_start):
            yield start, RequestSpec("POST", path, parse, content=body, idempotent=True)


def _import_specs(
    job_id: str, rows: list[dict[str, Any]], batch_size: int
) -> Iterator[tuple[int, int, RequestSpec[IngestResult]]]:
    """`(first row, row after the last, spec)` for each ingest request of an import."""
    if not 1 <= batch_size <= MAX_BATCH_ITEMS:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_ITEMS}")
    previous: tuple[int, RequestSpec[IngestResult]] | None = None
    for start, spec in _ingest_specs(job_id, rows, batch_size):
        if previous is not None:
            yield previous[0], start, previous[1]
        previous = (start, spec)
    if previous is not None:
        yield previous[0], len(rows), previous[1]


def _stream_spec(job_id: str, last_event_id: int | None) -> RequestSpec[None]:
    return RequestSpec(
        "GET", _path(job_id, "stream"), lambda _r: None, params={"last_event_id": last_event_id}
    )


STREAM_EVENT_MODELS: dict[str, type[WireModel]] = {
    "predictions": PredictionsEvent,
    "round_complete": RoundCompleteEvent,
    "heartbeat": HeartbeatEvent,
}
DEFAULT_MAX_RECONNECTS = 10


@dataclass(frozen=True)
class StreamEvent:
    """One server-sent event: `event` is `predictions`, `round_complete` or `heartbeat`, and
    `data` the matching model (`PredictionsEvent`, `RoundCompleteEvent`, `HeartbeatEvent`);
    an event kind this SDK does not know yet keeps its parsed JSON as a plain value."""

    id: int
    event: str
    data: Any = field(repr=False)


def _typed(raw: ServerSentEvent) -> StreamEvent | None:
    if raw.id is None or not raw.id.isdigit():
        return None
    payload = orjson.loads(raw.data)
    model = STREAM_EVENT_MODELS.get(raw.event)
    return StreamEvent(int(raw.id), raw.event, model.from_json_data(payload) if model else payload)


class _Reconnects:
    """Consecutive-failure bookkeeping shared by the sync and async streams."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failures = 0

    def delay_after(self, error: Exception) -> float:
        """The pause before the next attempt, or raise once `limit` attempts in a row failed."""
        self.failures += 1
        if self.failures > self.limit:
            raise error
        return backoff_delay(self.failures - 1)


def _lost(exc: httpx.TransportError, response: httpx.Response) -> Exception:
    return map_transport_error(exc, response.request)


# A server that is busy or briefly without its database (429, 5xx) counts as a failed attempt
# too: the stream waits it out within `max_reconnects` instead of ending.
_RECONNECTABLE = (APIConnectionError, APITimeoutError, InternalServerError, RateLimitError)


class _IngestTotals:
    """Sums the per-batch answers into one `IngestResult`."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.accepted = self.created = self.updated = 0

    def add(self, result: IngestResult) -> None:
        self.job_id = result.job_id
        self.accepted += result.accepted
        self.created += result.created
        self.updated += result.updated

    def result(self) -> IngestResult:
        data = {
            "job_id": self.job_id,
            "accepted": self.accepted,
            "created": self.created,
            "updated": self.updated,
        }
        result: IngestResult = IngestResult.from_json_data(data)
        return result


def _in_batch(error: ValidationError, start: int) -> ValidationError:
    """Point a 422 from a later batch at the caller's own item numbering."""
    if start == 0:
        return error
    message = (
        f"{error.message} (in the batch starting at item {start}; items before {start} were stored)"
    )
    return type(error)(message, error.status_code, error.response, error_type=error.error_type)


class TrainingPredictions:
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
        filters = _Filters(epoch, step, sample_index, prompt_id, validation_pass, q)
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
        page_size: int = 500,
    ) -> Iterator[Prediction]:
        """Every matching prediction, fetched page by page through the cursor (constant cost)."""
        filters = _Filters(epoch, step, sample_index, prompt_id, validation_pass, q)
        cursor: str | None = None
        while True:
            spec = _page_spec(job_id, filters, limit=page_size, offset=0, cursor=cursor)
            page = self._transport.execute(spec)
            yield from page.predictions
            if not page.next_cursor or not page.predictions:
                return
            cursor = page.next_cursor

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
        page_size: int = 500,
    ) -> pd.DataFrame:
        """The rows of `iter()` (same filters) as a DataFrame: one column per field, each
        custom metric as a float column `metrics.<name>`, `validation_errors` as lists of
        dicts. Needs the `pandas` extra (`pip install 'finetune-lab[pandas]'`)."""
        require_pandas()  # before any request: a missing extra fails fast
        rows = self.iter(
            job_id,
            epoch=epoch,
            step=step,
            sample_index=sample_index,
            prompt_id=prompt_id,
            validation_pass=validation_pass,
            q=q,
            page_size=page_size,
        )
        return predictions_frame(rows)

    def epochs(self, job_id: str) -> EpochsResponse:
        return self._transport.execute(_epochs_spec(job_id))

    def trends(self, job_id: str, *, group_by: GroupBy = "epoch") -> TrendsResponse:
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
        event. A lost connection is resumed from the last event received, so nothing is missed
        or repeated; after `max_reconnects` failed attempts in a row the error is raised.
        """
        last = last_event_id
        reconnects = _Reconnects(max_reconnects)
        while True:
            try:
                response = self._transport.open_stream(_stream_spec(job_id, last))
            except _RECONNECTABLE as exc:
                _transport._sleep(reconnects.delay_after(exc))
                continue
            decoder = SSEDecoder()
            error: Exception = APIConnectionError(f"the event stream of {job_id!r} ended")
            try:
                for line in response.iter_lines():
                    raw = decoder.feed(line)
                    event = _typed(raw) if raw is not None else None
                    if event is not None:
                        last = event.id
                        reconnects.failures = 0
                        yield event
            except httpx.TransportError as exc:
                error = _lost(exc, response)
            finally:
                response.close()
            _transport._sleep(reconnects.delay_after(error))

    def create(
        self,
        job_id: str,
        predictions: Sequence[PredictionItem],
        *,
        chunk_size: int = MAX_BATCH_ITEMS,
    ) -> IngestResult:
        """Store predictions (an upsert on `(step, sample_index)`), in batches the server takes.

        Each batch is atomic on the server; if a later batch is rejected, earlier ones stay.
        """
        totals = _IngestTotals(job_id)
        for start, spec in _ingest_specs(job_id, predictions, chunk_size):
            try:
                totals.add(self._transport.execute(spec))
            except ValidationError as exc:
                raise _in_batch(exc, start) from exc
        return totals.result()

    def import_file(
        self,
        job_id: str,
        path: str | os.PathLike[str],
        *,
        format: ImportFormat | None = None,
        batch_size: int = 1000,
        progress: ImportProgress | None = None,
    ) -> IngestResult:
        """Ingest an export file (JSONL, CSV, Parquet; `format` from the extension, `.gz` allowed
        for JSONL/CSV) into the existing job `job_id`. The whole file is checked first: a bad one
        raises ImportFileError naming the line or row, before anything is sent. Scores,
        validation, ids and timestamps in the file are ignored and recomputed by the server.
        Ingest is an upsert, so an interrupted import can simply be run again. `progress(done,
        total)` is called after each batch."""
        rows = read_predictions(path, format)
        totals = _IngestTotals(job_id)
        for start, end, spec in _import_specs(job_id, rows, batch_size):
            try:
                totals.add(self._transport.execute(spec))
            except ValidationError as exc:
                raise _in_batch(exc, start) from exc
            if progress is not None:
                progress(end, len(rows))
        return totals.result()

    @overload
    def export(
        self,
        job_id: str,
        *,
        format: ExportFormat = "jsonl",
        path: None = None,
        epoch: int | None = None,
        step: int | None = None,
    ) -> bytes: ...

    @overload
    def export(
        self,
        job_id: str,
        *,
        format: ExportFormat = "jsonl",
        path: str | os.PathLike[str],
        epoch: int | None = None,
        step: int | None = None,
    ) -> Path: ...

    def export(
        self,
        job_id: str,
        *,
        format: ExportFormat = "jsonl",
        path: str | os.PathLike[str] | None = None,
        epoch: int | None = None,
        step: int | None = None,
    ) -> bytes | Path:
        """The job's predictions as a file: bytes in memory, or streamed to `path` (big jobs)."""
        spec = _export_spec(job_id, format, epoch, step)
        if path is None:
            return self._transport.execute(spec)
        return self._transport.download(spec, _export_target(job_id, format, path))


class AsyncTrainingPredictions:
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
        filters = _Filters(epoch, step, sample_index, prompt_id, validation_pass, q)
        spec = _page_spec(job_id, filters, limit=limit, offset=offset, cursor=cursor, sort=sort)
        return await self._transport.execute(spec)

    async def iter(
        self,
        job_id: str,
        *,
        epoch: int | None = None,
        step: int | None = None,
        sample_index: int | None = None,
        prompt_id: str | None = None,
        validation_pass: bool | None = None,
        q: str | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[Prediction]:
        """`async for p in client.training_predictions.iter(job_id)`: every matching row."""
        filters = _Filters(epoch, step, sample_index, prompt_id, validation_pass, q)
        cursor: str | None = None
        while True:
            spec = _page_spec(job_id, filters, limit=page_size, offset=0, cursor=cursor)
            page = await self._transport.execute(spec)
            for prediction in page.predictions:
                yield prediction
            if not page.next_cursor or not page.predictions:
                return
            cursor = page.next_cursor

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
        page_size: int = 500,
    ) -> pd.DataFrame:
        """`await client.training_predictions.to_pandas(job_id)`; see the sync one."""
        require_pandas()
        rows = self.iter(
            job_id,
            epoch=epoch,
            step=step,
            sample_index=sample_index,
            prompt_id=prompt_id,
            validation_pass=validation_pass,
            q=q,
            page_size=page_size,
        )
        return predictions_frame([prediction async for prediction in rows])

    async def epochs(self, job_id: str) -> EpochsResponse:
        return await self._transport.execute(_epochs_spec(job_id))

    async def trends(self, job_id: str, *, group_by: GroupBy = "epoch") -> TrendsResponse:
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
        """`await client.training_predictions.gate(job_id, min=..., max=...)`; see the sync one."""
        spec = gate_spec(min, max, epoch, step)
        return evaluate_gate(await self._transport.execute(_trends_spec(job_id, "step")), spec)

    async def sample(self, job_id: str, sample_index: int) -> SampleHistory:
        return await self._transport.execute(_sample_spec(job_id, sample_index))

    async def compare(
        self, job_id: str, *, from_epoch: int, to_epoch: int, to_job: str | None = None
    ) -> CompareResponse:
        return await self._transport.execute(_compare_spec(job_id, from_epoch, to_epoch, to_job))

    async def matrix(
        self, job_id: str, *, metric: str, limit: int = 100, offset: int = 0
    ) -> PredictionMatrix:
        return await self._transport.execute(_matrix_spec(job_id, metric, limit, offset))

    async def judges(self, job_id: str, *, limit: int = 50, offset: int = 0) -> JudgeStatus:
        return await self._transport.execute(_judges_spec(job_id, limit, offset))

    async def stream(
        self,
        job_id: str,
        *,
        last_event_id: int | None = None,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    ) -> AsyncIterator[StreamEvent]:
        """`async for event in client.training_predictions.stream(job_id)`; see the sync one."""
        last = last_event_id
        reconnects = _Reconnects(max_reconnects)
        while True:
            try:
                response = await self._transport.open_stream(_stream_spec(job_id, last))
            except _RECONNECTABLE as exc:
                await _transport._async_sleep(reconnects.delay_after(exc))
                continue
            decoder = SSEDecoder()
            error: Exception = APIConnectionError(f"the event stream of {job_id!r} ended")
            try:
                async for line in response.aiter_lines():
                    raw = decoder.feed(line)
                    event = _typed(raw) if raw is not None else None
                    if event is not None:
                        last = event.id
                        reconnects.failures = 0
                        yield event
            except httpx.TransportError as exc:
                error = _lost(exc, response)
            finally:
                await response.aclose()
            await _transport._async_sleep(reconnects.delay_after(error))

    async def create(
        self,
        job_id: str,
        predictions: Sequence[PredictionItem],
        *,
        chunk_size: int = MAX_BATCH_ITEMS,
    ) -> IngestResult:
        totals = _IngestTotals(job_id)
        for start, spec in _ingest_specs(job_id, predictions, chunk_size):
            try:
                totals.add(await self._transport.execute(spec))
            except ValidationError as exc:
                raise _in_batch(exc, start) from exc
        return totals.result()

    async def import_file(
        self,
        job_id: str,
        path: str | os.PathLike[str],
        *,
        format: ImportFormat | None = None,
        batch_size: int = 1000,
        progress: ImportProgress | None = None,
    ) -> IngestResult:
        """`await client.training_predictions.import_file(job_id, path)`; see the sync one (the
        file is read in a worker thread)."""
        rows = await anyio.to_thread.run_sync(read_predictions, path, format)
        totals = _IngestTotals(job_id)
        for start, end, spec in _import_specs(job_id, rows, batch_size):
            try:
                totals.add(await self._transport.execute(spec))
            except ValidationError as exc:
                raise _in_batch(exc, start) from exc
            if progress is not None:
                progress(end, len(rows))
        return totals.result()

    @overload
    async def export(
        self,
        job_id: str,
        *,
        format: ExportFormat = "jsonl",
        path: None = None,
        epoch: int | None = None,
        step: int | None = None,
    ) -> bytes: ...

    @overload
    async def export(
        self,
        job_id: str,
        *,
        format: ExportFormat = "jsonl",
        path: str | os.PathLike[str],
        epoch: int | None = None,
        step: int | None = None,
    ) -> Path: ...

    async def export(
        self,
        job_id: str,
        *,
        format: ExportFormat = "jsonl",
        path: str | os.PathLike[str] | None = None,
        epoch: int | None = None,
        step: int | None = None,
    ) -> bytes | Path:
        spec = _export_spec(job_id, format, epoch, step)
        if path is None:
            return await self._transport.execute(spec)
        return await self._transport.download(spec, _export_target(job_id, format, path))
