"""`training_predictions.to_pandas()` (sync and async) against the live server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from finetune_lab import AsyncFinetuneLabClient, FinetuneLabClient
from finetune_lab.schema import SORT_KEYS, Prediction, SortKey

from ._data import ROUNDS, SAMPLES, rows

pd = pytest.importorskip("pandas")

ORDER = [(r["epoch"], r["step"], r["sample_index"]) for r in rows()]


def _keys(frame: pd.DataFrame) -> list[tuple[int, int, int]]:
    return list(zip(frame["epoch"], frame["step"], frame["sample_index"], strict=True))


def _same_as_iter(frame: pd.DataFrame, listed: list[Prediction]) -> None:
    """Every field of every row equals what `iter()` gave, metrics spread into columns."""
    assert len(frame) == len(listed)
    assert "metrics" not in frame.columns
    for record, p in zip(frame.to_dict("records"), listed, strict=True):
        for name, value in p.model_dump(exclude={"metrics"}).items():
            got = record[name]
            if value is None:
                assert got is None or pd.isna(got), (name, got)
            elif name == "created_at":
                assert got.to_pydatetime() == value, (got, value)
            else:
                assert got == value, (name, got, value)
        for name, value in (p.metrics or {}).items():
            assert record[f"metrics.{name}"] == value


def test_rows_equal_iter_with_one_column_per_metric(
    client: FinetuneLabClient, seeded_job: str
) -> None:
    tp = client.training_predictions
    frame = tp.to_pandas(seeded_job, page_size=3)  # several pages
    _same_as_iter(frame, list(tp.iter(seeded_job)))
    assert _keys(frame) == ORDER
    assert frame["metrics.reward"].tolist() == [float(i % SAMPLES) for i in range(len(ORDER))]
    assert frame["created_at"].dt.tz is not None
    assert list(frame["prediction"][-SAMPLES:]) == ROUNDS[(2, 20)]
    assert str(frame["epoch"].dtype) == "int64"
    assert str(frame["metrics.reward"].dtype) == "float64"


def test_filters_are_the_iter_filters(client: FinetuneLabClient, seeded_job: str) -> None:
    tp = client.training_predictions
    epoch1 = tp.to_pandas(seeded_job, epoch=1)
    assert _keys(epoch1) == [k for k in ORDER if k[0] == 1]
    one = tp.to_pandas(seeded_job, sample_index=2, q="abcx")
    _same_as_iter(one, list(tp.iter(seeded_job, sample_index=2, q="abcx")))
    assert _keys(one) == [(0, 0, 2), (2, 20, 2)]


@pytest.mark.parametrize("sort", SORT_KEYS)
def test_sort_gives_the_rows_of_the_sorted_list_in_its_order(
    client: FinetuneLabClient, seeded_job: str, sort: SortKey
) -> None:
    """With `sort`, the frame's rows are the paged list's rows in that order (several pages)."""
    tp = client.training_predictions
    listed = tp.get(seeded_job, sort=sort, limit=1000)
    assert listed.total_count == len(ORDER) and listed.next_cursor is None
    frame = tp.to_pandas(seeded_job, sort=sort, page_size=3)
    _same_as_iter(frame, listed.predictions)
    assert frame["id"].tolist() == [p.id for p in listed.predictions]
    # Filters apply to a sorted frame too.
    epoch1 = tp.to_pandas(seeded_job, epoch=1, sort=sort, page_size=2)
    assert epoch1["id"].tolist() == [
        p.id for p in tp.get(seeded_job, epoch=1, sort=sort).predictions
    ]


def test_sort_is_not_read_order(client: FinetuneLabClient, seeded_job: str) -> None:
    frame = client.training_predictions.to_pandas(seeded_job, sort="-char_error_rate", page_size=5)
    worst = frame["char_error_rate"].tolist()
    assert worst == sorted(worst, reverse=True) and _keys(frame) != ORDER
    assert sorted(_keys(frame)) == sorted(ORDER)  # the same rows, another order


def test_sparse_metrics_and_validation_errors(
    client: FinetuneLabClient, unique_job_id: str
) -> None:
    config = {"predictions": {"validators": {"json_parse": True}}}
    client.jobs.create(id=unique_job_id, name="frames", model_name="tiny", config=config)
    base = {"epoch": 0, "step": 0, "prompt": "say json", "ground_truth": '{"a": 1}'}
    client.training_predictions.create(
        unique_job_id,
        [
            {**base, "sample_index": 0, "prediction": '{"a": 1}', "metrics": {"b": 1.5}},
            {**base, "sample_index": 1, "prediction": "not json", "metrics": {"a": -2.0}},
            {**base, "sample_index": 2, "prediction": '{"a": 2}', "prompt_tokens": 2**62},
        ],
    )
    frame = client.training_predictions.to_pandas(unique_job_id)
    listed = list(client.training_predictions.iter(unique_job_id))
    _same_as_iter(frame, listed)
    metric_columns = [c for c in frame.columns if c.startswith("metrics.")]
    assert metric_columns == ["metrics.a", "metrics.b"]
    assert frame["metrics.a"].isna().tolist() == [True, False, True]
    assert frame["metrics.b"].isna().tolist() == [False, True, True]
    errors = frame["validation_errors"]
    assert errors[0] in (None, []) and errors[2] in (None, [])
    assert isinstance(errors[1], list) and errors[1]
    assert errors[1][0]["validator"] == "json_parse"
    assert errors[1] == [e.model_dump() for e in listed[1].validation_errors or []]
    assert frame["validation_pass"].tolist() == [True, False, True]
    # Optional integers are nullable integers, exact beyond 2^53.
    assert frame["prompt_tokens"][2] == 2**62 and pd.isna(frame["prompt_tokens"][0])


def test_empty_job_has_the_columns_and_dtypes(client: FinetuneLabClient, seeded_job: str) -> None:
    empty_job = client.jobs.create(name="empty", model_name="tiny").id
    empty = client.training_predictions.to_pandas(empty_job)
    full = client.training_predictions.to_pandas(seeded_job)
    assert len(empty) == 0
    assert list(empty.columns) == [c for c in full.columns if not c.startswith("metrics.")]
    assert empty.dtypes.equals(full.dtypes.drop("metrics.reward"))


def test_missing_pandas_names_the_extra(
    client: FinetuneLabClient, unique_job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    # No such job: the ImportError comes first, before any request could answer 404.
    with pytest.raises(ImportError, match=r"pip install 'finetune-lab\[pandas\]'"):
        client.training_predictions.to_pandas(unique_job_id)


@pytest.mark.anyio
async def test_async_frame_equals_sync_frame(
    client: FinetuneLabClient,
    async_client: AsyncFinetuneLabClient,
    seeded_job: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tp = async_client.training_predictions
    frame = await tp.to_pandas(seeded_job, page_size=5)
    pd.testing.assert_frame_equal(frame, client.training_predictions.to_pandas(seeded_job))
    epoch2 = await tp.to_pandas(seeded_job, epoch=2)
    assert _keys(epoch2) == [k for k in ORDER if k[0] == 2]
    worst = await tp.to_pandas(seeded_job, sort="-char_error_rate", page_size=4)
    pd.testing.assert_frame_equal(
        worst, client.training_predictions.to_pandas(seeded_job, sort="-char_error_rate")
    )
    listed = (await tp.get(seeded_job, sort="-char_error_rate", limit=1000)).predictions
    assert worst["id"].tolist() == [p.id for p in listed] and _keys(worst) != ORDER

    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"finetune-lab\[pandas\]"):
        await tp.to_pandas(seeded_job)


def test_parquet_export_reads_back_typed_in_pandas(
    client: FinetuneLabClient, seeded_job: str, tmp_path: Path
) -> None:
    """The Parquet export's `metrics` is a map column: pandas gets `(name, value)` pairs, not
    JSON text, and the frame from `to_pandas` agrees with it row for row."""
    pytest.importorskip("pyarrow")
    path = client.training_predictions.export(seeded_job, format="parquet", path=tmp_path)
    exported = pd.read_parquet(path)
    frame = client.training_predictions.to_pandas(seeded_job)
    assert exported["id"].tolist() == frame["id"].tolist()
    assert [dict(cell) for cell in exported["metrics"]] == [
        {"reward": value} for value in frame["metrics.reward"]
    ]
    assert exported["prediction"].tolist() == frame["prediction"].tolist()
