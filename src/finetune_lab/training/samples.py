"""The fixed prompts a run is watched on: loading, normalising, picking and rendering them."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SampleSource = str | Path | Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class Sample:
    """One evaluation prompt; chat samples keep their messages until a tokenizer renders them."""

    source_index: int
    ground_truth: str | None
    prompt: str | None = None
    messages: tuple[Mapping[str, Any], ...] | None = None
    source_id: str | None = None
    # The record as loaded: what custom metrics are handed as `sample`.
    record: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def render(self, tokenizer: Any) -> str:
        """The exact text the model is given (chat samples through the tokenizer's template)."""
        if self.messages is None:
            return self.prompt or ""
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                "chat samples need a tokenizer with a chat template (tokenizer.chat_template)"
            )
        text = tokenizer.apply_chat_template(
            list(self.messages), tokenize=False, add_generation_prompt=True
        )
        return str(text)


def prompt_id(rendered_prompt: str) -> str:
    """Stable id of a prompt across rounds and runs: SHA-256 of the prompt part only."""
    return hashlib.sha256(rendered_prompt.encode("utf-8")).hexdigest()


def _read_path(path: Path) -> list[Mapping[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    stem = path.with_suffix("") if path.suffix == ".gz" else path
    if stem.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, dict):  # {"samples": [...]} or {"data": [...]}
        data = data.get("samples", data.get("data"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records")
    return data


def load_records(samples: SampleSource) -> tuple[list[Mapping[str, Any]], str]:
    """(records, source label) from a JSON/JSONL(.gz) path, a list of dicts or a Dataset."""
    if isinstance(samples, str | Path):
        path = Path(samples)
        return _read_path(path), path.name
    label = "dataset" if hasattr(samples, "column_names") else "list"
    return [dict(record) for record in samples], label


def _text(value: Any, what: str, index: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"sample {index}: {what} must be a string, got {type(value).__name__}")
    return value


def parse_record(record: Mapping[str, Any], index: int) -> Sample:
    """A record with `prompt`/`completion`, `input`/`output` or chat `messages` as a Sample."""
    raw_id = record.get("id")
    source_id = None if raw_id is None else str(raw_id)
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"sample {index}: messages must be a non-empty list")
        last = max(
            (i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None
        )
        if last is None:
            return Sample(index, None, messages=tuple(messages), source_id=source_id, record=record)
        if last == 0:
            raise ValueError(f"sample {index}: no prompt messages before the assistant answer")
        truth = _text(messages[last].get("content"), "the assistant message content", index)
        return Sample(
            index, truth, messages=tuple(messages[:last]), source_id=source_id, record=record
        )
    for prompt_key, truth_key in (("prompt", "completion"), ("input", "output")):
        if prompt_key in record:
            raw_truth = record.get(truth_key)
            return Sample(
                index,
                None if raw_truth is None else _text(raw_truth, truth_key, index),
                prompt=_text(record[prompt_key], prompt_key, index),
                source_id=source_id,
                record=record,
            )
    raise ValueError(
        f"sample {index}: expected `prompt`/`completion`, `input`/`output` or `messages` keys, "
        f"got {sorted(record)}"
    )


def pick_samples(samples: SampleSource, count: int, *, seed: int = 0) -> tuple[list[Sample], str]:
    """`count` samples chosen with a private seeded RNG (never the global one), in file order."""
    if count < 1:
        raise ValueError("sample_count must be >= 1")
    records, label = load_records(samples)
    if not records:
        raise ValueError("no samples: the sample source is empty")
    chosen: Sequence[int] = range(len(records))
    if len(records) > count:
        chosen = sorted(random.Random(seed).sample(range(len(records)), count))
    return [parse_record(records[i], i) for i in chosen], label
