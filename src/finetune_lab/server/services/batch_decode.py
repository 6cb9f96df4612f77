"""Ingest bodies decoded by msgspec: the strict, common case, in a third of pydantic's time.

`schema.PredictionsBatch` (pydantic) stays the contract and the only source of error messages.
The msgspec types below accept a subset of what it accepts, with the same values: exact JSON
types (no "5" for an int, no 1.0 for a count, no 0/1 for a bool) and the same bounds. Any body
they refuse (wrong types, out of bounds, invalid JSON; msgspec refuses 1e999 rather than read it
as inf, and NaN) goes through pydantic, which either coerces it as it always did or reports the
error as it always did: the fast path changes how long a body takes, never what it means.
tests/server/test_batch_decode.py pins this on edge cases of every field and random items.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from finetune_lab.schema import MAX_BATCH_ITEMS, MAX_INT, MAX_TEXT_CHARS, PredictionsBatch

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
Label = Annotated[str, msgspec.Meta(max_length=1024)]
Key = Annotated[str, msgspec.Meta(max_length=256)]
MetricName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Metrics = Annotated[dict[MetricName, float], msgspec.Meta(max_length=64)]


class IngestItem(msgspec.Struct, forbid_unknown_fields=True):
    """One prediction as sent (`schema.PredictionIn`, field for field, in its order)."""

    epoch: Count
    step: Count
    sample_index: Count
    prompt: Text
    prediction: Text
    ground_truth: Text | None = None
    prompt_id: Key | None = None
    source_index: Count | None = None
    sample_source: Label | None = None
    sample_source_id: Label | None = None
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    total_tokens: Count | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    max_new_tokens: Count | None = None
    do_sample: bool | None = None
    metrics: Metrics | None = None


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    predictions: Annotated[list[IngestItem], msgspec.Meta(max_length=MAX_BATCH_ITEMS)]


FIELDS = IngestItem.__struct_fields__
_decoder = msgspec.json.Decoder(_Batch)


def decode(body: bytes) -> list[IngestItem]:
    """The batch's items; raises pydantic.ValidationError exactly where pydantic would."""
    try:
        return _decoder.decode(body).predictions
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    parsed = PredictionsBatch.model_validate_json(body).predictions
    return [IngestItem(**{name: getattr(item, name) for name in FIELDS}) for item in parsed]
