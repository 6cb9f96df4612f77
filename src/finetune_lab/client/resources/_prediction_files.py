"""Getting predictions in and out of the server in bulk: batched ingest, file import, export.

The half of `client.training_predictions` that moves files and large batches; the classes here
are mixed into `TrainingPredictions` and `AsyncTrainingPredictions`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias, overload

import anyio.to_thread
import orjson
from pydantic import BaseModel

from finetune_lab.client._import_file import ImportFormat, read_predictions
from finetune_lab.client._transport import (
    AsyncTransport,
    RequestSpec,
    SyncTransport,
    parse_bytes,
    parse_model,
    path_segment,
)
from finetune_lab.errors import ValidationError
from finetune_lab.schema import (
    MAX_BATCH_ITEMS,
    MAX_BODY_BYTES,
    ExportFormat,
    IngestResult,
    PredictionIn,
)

PredictionItem: TypeAlias = PredictionIn | Mapping[str, Any]
ImportProgress: TypeAlias = Callable[[int, int], None]

PREFIX = "/api/training/predictions"
# Room for the `{"predictions":[...]}` wrapper and separators under the server's body limit.
_BODY_BUDGET = MAX_BODY_BYTES - 64 * 1024
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY  # training loops often hand us numpy scalars


def predictions_path(job_id: str, *rest: str | int) -> str:
    return "/".join([PREFIX, path_segment(job_id), *(path_segment(part) for part in rest)])


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
    path = predictions_path(job_id)
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


def _export_spec(
    job_id: str, format: ExportFormat, epoch: int | None, step: int | None
) -> RequestSpec[bytes]:
    params = {"format": format, "epoch": epoch, "step": step}
    return RequestSpec("GET", predictions_path(job_id, "export"), parse_bytes, params=params)


def _export_target(job_id: str, format: str, path: str | os.PathLike[str]) -> Path:
    """`path` as given, or `<dir>/<job_id>.<format>` when it names an existing directory."""
    target = Path(path)
    if target.is_dir():
        target = target / f"{job_id}.{format}"
    return target


class PredictionFiles:
    """Sync bulk ingest, import and export (mixed into `TrainingPredictions`)."""

    _transport: SyncTransport

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
        total)` is called after each batch. (The async client reads the file in a thread.)"""
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


class AsyncPredictionFiles:
    """Async bulk ingest, import and export (mixed into `AsyncTrainingPredictions`)."""

    _transport: AsyncTransport

    async def create(
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
        """Ingest an export file (JSONL, CSV, Parquet; `format` from the extension, `.gz` allowed
        for JSONL/CSV) into the existing job `job_id`. The whole file is checked first: a bad one
        raises ImportFileError naming the line or row, before anything is sent. Scores,
        validation, ids and timestamps in the file are ignored and recomputed by the server.
        Ingest is an upsert, so an interrupted import can simply be run again. `progress(done,
        total)` is called after each batch. (The async client reads the file in a thread.)"""
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
        """The job's predictions as a file: bytes in memory, or streamed to `path` (big jobs)."""
        spec = _export_spec(job_id, format, epoch, step)
        if path is None:
            return await self._transport.execute(spec)
        return await self._transport.download(spec, _export_target(job_id, format, path))
