"""Read a predictions export (JSONL, CSV, Parquet) back into ingest items.

The whole file is read and checked before anything is sent, so a bad file fails without a
partial import. Server-computed fields (scores, validation, ids, timestamps) are dropped: the
server recomputes them, a file is never trusted for them.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

import orjson
import pydantic

from finetune_lab.schema import (
    EXPORT_FORMATS,
    JUDGE_METRIC_PREFIX,
    ExportFormat,
    Prediction,
    PredictionIn,
)

ImportFormat: TypeAlias = ExportFormat  # an import reads what an export writes

INPUT_FIELDS = tuple(PredictionIn.model_fields)
# Written by the export, recomputed by the server on ingest: ignored on import.
SERVER_FIELDS = (frozenset(Prediction.model_fields) | {"user_id"}) - frozenset(INPUT_FIELDS)
REQUIRED_FIELDS = tuple(n for n, f in PredictionIn.model_fields.items() if f.is_required())
_INT_FIELDS = frozenset(
    n for n, f in PredictionIn.model_fields.items() if "int" in str(f.annotation)
)
_REQUIRED_TEXT = frozenset(REQUIRED_FIELDS) - _INT_FIELDS
_SUFFIXES: dict[str, ImportFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
PYARROW_MISSING = "reading Parquet needs pyarrow: pip install pyarrow"


class ImportFileError(ValueError):
    """The file cannot be imported; the message names the line or row at fault."""


def detect_format(path: Path) -> tuple[ImportFormat, bool]:
    """(format, gzipped) from the file name: .jsonl/.ndjson/.csv/.parquet, .gz for text ones."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if gzipped:
        suffixes = suffixes[:-1]
    found = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if found is None or (gzipped and found == "parquet"):
        raise ImportFileError(
            f"cannot tell the format of {path.name!r} from its extension: expected .jsonl, "
            ".csv (either optionally .gz) or .parquet; or pass format="
        )
    return found, gzipped


def read_predictions(
    path: str | os.PathLike[str], format: ImportFormat | None = None
) -> list[dict[str, Any]]:
    """Every row of the file as an ingest item, checked; ImportFileError on the first bad one."""
    target = Path(path)
    if format is None:
        format, gzipped = detect_format(target)
    else:
        if format not in EXPORT_FORMATS:
            raise ImportFileError(f"unknown format {format!r}: expected jsonl, csv or parquet")
        gzipped = target.suffix.lower() == ".gz"
    if format == "parquet":
        rows = _parquet_rows(target)
    else:
        data = target.read_bytes()
        if gzipped:
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise ImportFileError(f"{target.name}: not a valid gzip file ({exc})") from None
        rows = _jsonl_rows(data) if format == "jsonl" else _csv_rows(data)
    return [_item(where, row) for where, row in rows]


def _item(where: str, row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ImportFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - set(INPUT_FIELDS) - SERVER_FIELDS)
    if unknown:
        raise ImportFileError(f"{where}: unknown column(s) {', '.join(unknown)}")
    missing = [name for name in REQUIRED_FIELDS if row.get(name) is None]
    if missing:
        raise ImportFileError(f"{where}: missing required column(s) {', '.join(missing)}")
    item = {name: row[name] for name in INPUT_FIELDS if row.get(name) is not None}
    _drop_judge_scores(item)
    try:
        PredictionIn.model_validate(item)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ImportFileError(f"{where}: {field}: {first['msg']}") from None
    return item


def _drop_judge_scores(item: dict[str, Any]) -> None:
    """`judge:<name>` metrics are server-computed too: the target job's judges grade again."""
    metrics = item.get("metrics")
    if not isinstance(metrics, dict):
        return
    kept = {k: v for k, v in metrics.items() if not str(k).startswith(JUDGE_METRIC_PREFIX)}
    if len(kept) == len(metrics):
        return
    if kept:
        item["metrics"] = kept
    else:
        del item["metrics"]


def _jsonl_rows(data: bytes) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ImportFileError(f"line {number}: malformed JSON ({exc})") from None


def _csv_rows(data: bytes) -> Iterator[tuple[str, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"not UTF-8 text ({exc})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
        missing = [name for name in REQUIRED_FIELDS if name not in header]
        if missing:
            raise ImportFileError(f"line 1 (header): missing column(s) {', '.join(missing)}")
        for number, raw in enumerate(reader, start=1):
            where = f"row {number} (line {reader.line_num})"
            if None in raw:
                raise ImportFileError(f"{where}: more cells than header columns")
            yield where, {name: _csv_value(where, name, cell) for name, cell in raw.items()}
    except csv.Error as exc:
        raise ImportFileError(f"line {reader.line_num}: malformed CSV ({exc})") from None


def _csv_value(where: str, name: str, cell: str | None) -> Any:
    """Undo the export's cell encoding: empty → null, one leading `'` (formula guard) removed,
    numbers, booleans and JSON columns parsed."""
    if cell is None or cell == "":
        return "" if name in _REQUIRED_TEXT else None  # CSV cannot tell "" from null
    if name in SERVER_FIELDS:
        return cell  # dropped anyway
    if cell.startswith("'"):
        return cell[1:]  # a text cell the export guarded; numbers are never guarded
    try:
        if name == "metrics":
            return orjson.loads(cell)
        if name == "do_sample":
            return {"True": True, "False": False, "true": True, "false": False}[cell]
        if name in _INT_FIELDS:
            return int(cell)
        if name == "latency_ms":
            return float(cell)
    except (ValueError, KeyError, orjson.JSONDecodeError):
        raise ImportFileError(f"{where}: {name}: cannot read {cell[:40]!r}") from None
    return cell


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(PYARROW_MISSING) from exc
    import pyarrow as pa

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ImportFileError(f"{path.name}: not a readable Parquet file ({exc})") from None
    names = file.schema_arrow.names
    missing = [name for name in REQUIRED_FIELDS if name not in names]
    if missing:
        raise ImportFileError(f"{path.name}: missing column(s) {', '.join(missing)}")
    columns = [name for name in names if name not in SERVER_FIELDS]
    number = 0
    try:
        for batch in file.iter_batches(columns=columns):
            for row in batch.to_pylist(maps_as_pydicts="strict"):
                number += 1
                yield f"row {number}", row
    except (pa.ArrowException, OSError) as exc:
        raise ImportFileError(f"row {number + 1}: unreadable Parquet data ({exc})") from None
