"""Sample loading, selection and prompt rendering (docs/OVERVIEW.md, "Training capture")."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import pytest

from finetune_lab.training.samples import parse_record, pick_samples, prompt_id
from finetune_lab.training.toy import CHAT_TEMPLATE

RECORDS = [{"prompt": f"q{i}", "completion": f"a{i}", "id": f"r{i}"} for i in range(20)]


def test_prompt_completion_and_input_output_records() -> None:
    plain = parse_record({"prompt": "2+2=", "completion": "4"}, 3)
    assert (plain.prompt, plain.ground_truth, plain.source_index, plain.messages) == (
        "2+2=",
        "4",
        3,
        None,
    )
    io = parse_record({"input": "x", "output": None}, 0)
    assert (io.prompt, io.ground_truth) == ("x", None)


def test_chat_record_splits_at_the_last_assistant_message() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    sample = parse_record({"messages": messages}, 0)
    assert sample.ground_truth == "4"
    assert sample.messages == tuple(messages[:4])


def test_chat_rendering_uses_the_template_and_prompt_id_hashes_the_prompt_only() -> None:
    class Tok:
        chat_template = CHAT_TEMPLATE

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):  # type: ignore[no-untyped-def]
            assert tokenize is False and add_generation_prompt is True
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    sample = parse_record(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        0,
    )
    rendered = sample.render(Tok())
    assert rendered == "<user>hi<assistant>"
    assert prompt_id(rendered) == hashlib.sha256(b"<user>hi<assistant>").hexdigest()
    Tok.chat_template = None  # type: ignore[assignment]
    with pytest.raises(ValueError, match="chat template"):
        sample.render(Tok())


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"text": "x"}, "expected `prompt`"),
        ({"prompt": 3, "completion": "x"}, "prompt must be a string"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "no prompt messages"),
    ],
)
def test_bad_records_are_refused_with_their_index(record: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_record(record, 7)


def test_selection_is_seeded_privately_and_keeps_file_order() -> None:
    random.seed(123)
    state = random.getstate()
    first, label = pick_samples(RECORDS, 5, seed=1)
    again, _ = pick_samples(RECORDS, 5, seed=1)
    other, _ = pick_samples(RECORDS, 5, seed=2)
    assert random.getstate() == state  # the global RNG was not touched
    indexes = [s.source_index for s in first]
    assert indexes == sorted(indexes) and len(set(indexes)) == 5
    assert indexes == [s.source_index for s in again]
    assert indexes != [s.source_index for s in other]
    assert label == "list" and first[0].source_id == f"r{indexes[0]}"
    everything, _ = pick_samples(RECORDS[:3], 8)
    assert [s.source_index for s in everything] == [0, 1, 2]


@pytest.mark.parametrize("name", ["s.json", "s.jsonl", "s.jsonl.gz", "s.json.gz"])
def test_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    text = (
        "\n".join(json.dumps(r) for r in RECORDS)
        if ".jsonl" in name
        else json.dumps({"samples": RECORDS})
    )
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    samples, label = pick_samples(path, 20)
    assert label == name
    assert [s.prompt for s in samples] == [r["prompt"] for r in RECORDS]


def test_datasets_dataset() -> None:
    datasets = pytest.importorskip("datasets")
    samples, label = pick_samples(datasets.Dataset.from_list(RECORDS), 4, seed=0)
    assert label == "dataset" and len(samples) == 4
    assert all(s.ground_truth == f"a{s.source_index}" for s in samples)
