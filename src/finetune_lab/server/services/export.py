"""Streamed exports: JSONL, CSV and Parquet, read page by page so memory stays flat."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson

from finetune_lab.schema import ExportFormat, PredictionFilters
from finetune_lab.server.db import Database
from finetune_lab.server.services.queries import PREDICTION_FIELDS, page_rows

EXPORT_PAGE = 2_000
MEDIA_TYPES: dict[ExportFormat, str] = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
JSON_FIELDS = ("validation_errors", "metrics")
# CSV injection (OWASP): a text cell starting with one of these is a formula to a spreadsheet.
# Such a cell gets one `'` in front; so does a cell that already starts with `'`, so the exact
# text is always the cell minus one leading `'`. Numbers are never text: `-1.5` stays a number.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def _pages(
    db: Database, user_id: int, job_id: str, filters: PredictionFilters
) -> Iterator[list[dict[str, Any]]]:
    """One transaction per page; each page reads only the owner's rows, so a job deleted (and
    its id re-created by someone else) during the download ends it instead of leaking."""
    after = None
    while True:
        with db.read() as conn:
            rows = page_rows(conn, job_id, filters, limit=EXPORT_PAGE, after=after, user_id=user_id)
        if not rows:
            return
        yield rows
        last = rows[-1]
        after = (last["epoch"], last["step"], last["sample_index"])


def _jsonl(pages: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
    for rows in pages:
        yield b"".join(
            orjson.dumps(row, option=orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE)
            for row in rows
        )


def _csv(pages: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PREDICTION_FIELDS)
    writer.writeheader()
    for rows in pages:
        for row in rows:
            row = dict(row)
            for name in JSON_FIELDS:
                if row[name] is not None:
                    row[name] = orjson.dumps(row[name]).decode()
            row["created_at"] = row["created_at"].isoformat()
            writer.writerow({name: csv_cell(value) for name, value in row.items()})
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


class _ChunkSink:
    """A write-only file for pyarrow that hands back what was written since the last drain."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _validation_errors_type(pa: Any) -> Any:
    """Parquet's `validation_errors`: a list of structs; `detail` (any JSON) stays JSON text;
    `type` is set on the errors that name one (e.g. "timeout"), else null."""
    fields = [
        ("validator", pa.string()),
        ("type", pa.string()),
        ("message", pa.string()),
        ("detail", pa.string()),
    ]
    return pa.list_(pa.struct(fields))


def _parquet_errors(errors: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if errors is None:
        return None
    return [
        {
            "validator": error.get("validator"),
            "type": error.get("type"),
            "message": error.get("message"),
            "detail": orjson.dumps(error.get("detail")).decode(),
        }
        for error in errors
    ]


def _double(value: Any) -> float | None:
    """JSON integers land in double columns as Python ints, and pyarrow refuses an int past
    2**53 instead of rounding it (a fuzzed `latency_ms` of 22665559553478696 ended the
    download mid-stream): convert first, as JSON readers do."""
    return None if value is None else float(value)


def _parquet(pages: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
    """Typed columns: `metrics` is a map<string, double> (pandas reads each cell back as a list
    of `(name, value)` pairs, pyarrow's `to_pylist(maps_as_pydicts="strict")` as a dict)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("job_id", pa.string()),
            ("epoch", pa.int64()),
            ("step", pa.int64()),
            ("sample_index", pa.int64()),
            ("prompt", pa.string()),
            ("ground_truth", pa.string()),
            ("prediction", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("exact_match", pa.float64()),
            ("char_error_rate", pa.float64()),
            ("length_ratio", pa.float64()),
            ("word_overlap", pa.float64()),
            ("prompt_id", pa.string()),
            ("source_index", pa.int64()),
            ("sample_source", pa.string()),
            ("sample_source_id", pa.string()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("total_tokens", pa.int64()),
            ("latency_ms", pa.float64()),
            ("max_new_tokens", pa.int64()),
            ("do_sample", pa.bool_()),
            ("validation_pass", pa.bool_()),
            ("validation_kind", pa.string()),
            ("validation_errors", _validation_errors_type(pa)),
            ("metrics", pa.map_(pa.string(), pa.float64())),
        ]
    )
    sink = _ChunkSink()
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd") as writer:
        for rows in pages:
            columns: dict[str, list[Any]] = {name: [] for name in PREDICTION_FIELDS}
            for row in rows:
                for name in PREDICTION_FIELDS:
                    columns[name].append(row[name])
                columns["validation_errors"][-1] = _parquet_errors(row["validation_errors"])
                columns["latency_ms"][-1] = _double(row["latency_ms"])
                if row["metrics"]:
                    columns["metrics"][-1] = {k: _double(v) for k, v in row["metrics"].items()}
            writer.write_table(pa.table(columns, schema=schema))
            yield sink.drain()
    yield sink.drain()


def export_stream(
    db: Database, user_id: int, job_id: str, filters: PredictionFilters, fmt: ExportFormat
) -> Iterator[bytes]:
    writer = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}[fmt]
    return writer(_pages(db, user_id, job_id, filters))
