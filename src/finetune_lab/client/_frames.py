"""Predictions as a pandas DataFrame, for notebooks. pandas is an optional extra, imported late.

The frame's columns follow `Prediction`: one column per field, typed from the model (so an
empty frame, or one where a field is always null, has the same dtypes as any other), with the
`metrics` dict spread into one float column per custom metric, `metrics.<name>`.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

from finetune_lab.schema import Prediction

if TYPE_CHECKING:
    import pandas as pd

METRIC_PREFIX = "metrics."
PANDAS_MISSING = "to_pandas() needs pandas, an optional extra: pip install 'finetune-lab[pandas]'"


def require_pandas() -> Any:
    """The pandas module, or an ImportError that says which extra to install."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(PANDAS_MISSING) from exc
    return pandas


def _dtype(annotation: Any) -> str:
    """The pandas dtype of a `Prediction` field: nullable ones where the API may send null."""
    origin = get_origin(annotation)
    args = get_args(annotation) if origin in (Union, types.UnionType) else (annotation,)
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)]
    if kinds == [bool]:
        return "boolean"
    if kinds == [int]:
        return "Int64" if optional else "int64"
    if kinds == [float]:
        return "float64"
    if kinds == [datetime]:
        return "datetime"
    return "object"  # texts, and validation_errors (a list of dicts, or None)


FIELD_DTYPES = {
    name: _dtype(info.annotation)
    for name, info in Prediction.model_fields.items()
    if name != "metrics"
}


def _record(prediction: Prediction) -> dict[str, Any]:
    row = prediction.model_dump(mode="python", exclude={"metrics"})
    for name, value in (prediction.metrics or {}).items():
        row[METRIC_PREFIX + name] = value
    return row


def predictions_frame(predictions: Iterable[Prediction]) -> pd.DataFrame:
    """One row per prediction, in the order given (the list endpoint's order)."""
    pandas = require_pandas()
    records = [_record(p) for p in predictions]
    seen: dict[str, None] = {}
    for record in records:
        seen.update(dict.fromkeys(record))
    extras = [name for name in seen if name not in FIELD_DTYPES]  # fields of a newer server
    metrics = sorted(name for name in extras if name.startswith(METRIC_PREFIX))
    others = [name for name in extras if not name.startswith(METRIC_PREFIX)]
    dtypes = {
        **FIELD_DTYPES,
        **dict.fromkeys(others, "object"),
        **dict.fromkeys(metrics, "float64"),
    }
    # Column by column, so an optional integer never passes through float (ids reach 2^63).
    data = {
        name: _column(pandas, [r.get(name) for r in records], dtype)
        for name, dtype in dtypes.items()
    }
    return pandas.DataFrame(data, columns=list(dtypes))


def _column(pandas: Any, values: list[Any], dtype: str) -> Any:
    if dtype == "datetime":  # microseconds: what the API sends, whatever the pandas default
        return pandas.Series(pandas.to_datetime(values, utc=True)).astype("datetime64[us, UTC]")
    return pandas.Series(values, dtype=dtype)
