"""`client.training_predictions` against the live server (both backends)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import httpx
import pytest

from _support.appserver import ServerHandle
from finetune_lab import FinetuneLabClient, NotFoundError, ValidationError
from finetune_lab.schema import SORT_KEYS, Prediction, PredictionIn, SortKey

from ._data import (
    CER,
    RERUN_PAIRS,
    ROUNDS,
    SAMPLES,
    TRUTH,
    avg_cer,
    avg_exact,
    bulk_rows,
    epoch_groups,
    expected_improvement,
    rerun_rows,
    rows,
)

ORDER = [(r["epoch"], r["step"], r["sample_index"]) for r in rows()]


def _key(p: Prediction) -> tuple[int, int, int]:
    return (p.epoch, p.step, p.sample_index)


def test_get_returns_scored_rows_in_order(client: FinetuneLabClient, seeded_job: str) -> None:
    page = client.training_predictions.get(seeded_job, limit=100)
    assert page.job_id == seeded_job
    assert page.total_count == 16
    assert page.epoch_count == 3
    assert [_key(p) for p in page.predictions] == ORDER
    for p in page.predictions:
        assert p.ground_truth == TRUTH
        assert p.char_error_rate == pytest.approx(CER[p.prediction])
        assert p.exact_match == (1.0 if p.prediction == TRUTH else 0.0)
        assert p.prompt_id == f"p{p.sample_index}"
        assert p.metrics == {"reward": float(p.sample_index)}
        assert p.latency_ms == 12.5
    # `.raw` keeps the JSON exactly as sent.
    assert page.raw["predictions"][0]["prediction"] == "wxyz"


def test_get_filters_and_pages(client: FinetuneLabClient, seeded_job: str) -> None:
    tp = client.training_predictions
    epoch1 = tp.get(seeded_job, epoch=1)
    assert epoch1.total_count == 8
    assert epoch1.epoch_count == 3  # epoch_count is about the whole job
    assert {_key(p)[:2] for p in epoch1.predictions} == {(1, 5), (1, 10)}

    step10 = tp.get(seeded_job, step=10)
    assert [p.prediction for p in step10.predictions] == ROUNDS[(1, 10)]

    sample2 = tp.get(seeded_job, sample_index=2)
    assert [p.prediction for p in sample2.predictions] == [r[2] for r in ROUNDS.values()]
    assert [p.prompt_id for p in tp.get(seeded_job, prompt_id="p3").predictions] == ["p3"] * 4

    second = tp.get(seeded_job, limit=5, offset=5)
    assert second.total_count == 16
    assert [_key(p) for p in second.predictions] == ORDER[5:10]

    first = tp.get(seeded_job, limit=5)
    assert first.next_cursor
    after = tp.get(seeded_job, limit=5, cursor=first.next_cursor)
    assert [_key(p) for p in after.predictions] == ORDER[5:10]


def test_validation_pass_filter_sends_booleans(
    client: FinetuneLabClient, unique_job_id: str
) -> None:
    config = {"predictions": {"validators": {"json_parse": True}}}
    client.jobs.create(id=unique_job_id, config=config)
    items = [
        PredictionIn(
            epoch=1, step=1, sample_index=i, prompt="p", prediction=pred, ground_truth=None
        )
        for i, pred in enumerate(['{"a": 1}', "not json", "[1, 2]"])
    ]
    assert client.training_predictions.create(unique_job_id, items).created == 3
    passed = client.training_predictions.get(unique_job_id, validation_pass=True)
    failed = client.training_predictions.get(unique_job_id, validation_pass=False)
    assert [p.sample_index for p in passed.predictions] == [0, 2]
    assert [p.sample_index for p in failed.predictions] == [1]
    bad = failed.predictions[0]
    assert bad.validation_pass is False
    assert bad.validation_kind == "json_parse"
    assert bad.validation_errors and bad.validation_errors[0].validator == "json_parse"


def test_create_without_ground_truth(client: FinetuneLabClient, unique_job_id: str) -> None:
    """ground_truth is optional; such rows are stored unscored."""
    client.jobs.create(id=unique_job_id)
    as_mapping = {"epoch": 0, "step": 0, "sample_index": 0, "prompt": "p", "prediction": "x"}
    as_model = PredictionIn(epoch=0, step=0, sample_index=1, prompt="p", prediction="y")
    assert client.training_predictions.create(unique_job_id, [as_mapping, as_model]).created == 2
    page = client.training_predictions.get(unique_job_id)
    assert [(p.ground_truth, p.char_error_rate, p.exact_match) for p in page.predictions] == [
        (None, None, None),
        (None, None, None),
    ]


def test_epochs(client: FinetuneLabClient, seeded_job: str) -> None:
    result = client.training_predictions.epochs(seeded_job)
    assert result.job_id == seeded_job
    got = [(e.epoch, e.prediction_count, e.latest_step) for e in result.epochs]
    assert got == [(0, 4, 0), (1, 8, 10), (2, 4, 20)]


def test_trends_by_epoch(client: FinetuneLabClient, seeded_job: str) -> None:
    result = client.training_predictions.trends(seeded_job)
    groups = epoch_groups()
    assert [t.epoch for t in result.trends] == [0, 1, 2]
    assert [t.step for t in result.trends] == [0, 10, 20]
    assert [t.sample_count for t in result.trends] == [4, 8, 4]
    for t in result.trends:
        preds = groups[t.epoch]
        assert t.avg_char_error_rate == pytest.approx(avg_cer(preds))
        assert t.avg_exact_match == pytest.approx(avg_exact(preds))
        assert t.min_char_error_rate == pytest.approx(min(CER[p] for p in preds))
        assert t.max_char_error_rate == pytest.approx(max(CER[p] for p in preds))
        assert t.validation_pass_rate is None  # no validators configured
    # Epoch 1 averages over its two rounds' rows, not over the two rounds' averages.
    assert result.trends[1].avg_char_error_rate == pytest.approx(0.59375)
    assert result.overall_improvement == pytest.approx(expected_improvement())
    assert result.trends[0].metrics["reward"] == pytest.approx(1.5)


def test_trends_by_step(client: FinetuneLabClient, seeded_job: str) -> None:
    result = client.training_predictions.trends(seeded_job, group_by="step")
    assert result.group_by == "step"
    assert [(t.epoch, t.step) for t in result.trends] == list(ROUNDS)
    for t in result.trends:
        assert t.sample_count == SAMPLES
        assert t.avg_char_error_rate == pytest.approx(avg_cer(ROUNDS[(t.epoch, t.step)]))


def test_trends_best_round(client: FinetuneLabClient, seeded_job: str) -> None:
    best = client.training_predictions.trends(seeded_job).best
    assert best.char_error_rate is not None and best.exact_match is not None
    assert (best.char_error_rate.epoch, best.char_error_rate.step) == (2, 20)
    assert best.char_error_rate.value == pytest.approx(avg_cer(ROUNDS[(2, 20)]))
    assert (best.exact_match.epoch, best.exact_match.step, best.exact_match.value) == (2, 20, 0.75)
    assert best.validation_pass_rate is None  # no validators configured
    # "reward" averages 1.5 in every round: the tie goes to the earliest.
    assert best.metrics["reward"].model_dump() == {"epoch": 0, "step": 0, "value": 1.5}


def test_matrix(client: FinetuneLabClient, seeded_job: str) -> None:
    tp = client.training_predictions
    grid = tp.matrix(seeded_job, metric="char_error_rate")
    assert (grid.job_id, grid.metric, grid.total_samples) == (seeded_job, "char_error_rate", 4)
    assert [(r.epoch, r.step) for r in grid.rounds] == list(ROUNDS)
    assert [s.sample_index for s in grid.samples] == list(range(SAMPLES))
    for sample in grid.samples:
        assert sample.prompt_id == f"p{sample.sample_index}"
        assert sample.values == pytest.approx(
            [CER[preds[sample.sample_index]] for preds in ROUNDS.values()]
        )
    page = tp.matrix(seeded_job, metric="reward", limit=2, offset=2)
    assert [(s.sample_index, s.values) for s in page.samples] == [
        (2, [2.0] * 4),
        (3, [3.0] * 4),
    ]
    with pytest.raises(ValidationError):
        tp.matrix(seeded_job, metric="no-such-metric")


def test_sample_history(client: FinetuneLabClient, seeded_job: str) -> None:
    history = client.training_predictions.sample(seeded_job, 0)
    assert (history.job_id, history.sample_index) == (seeded_job, 0)
    assert history.prompt == "Q0: spell abcd"
    assert history.ground_truth == TRUTH
    assert [(r.epoch, r.step, r.prediction) for r in history.rounds] == [
        (epoch, step, preds[0]) for (epoch, step), preds in ROUNDS.items()
    ]
    assert [r.char_error_rate for r in history.rounds] == [1.0, 1.0, 0.25, 0.0]


def test_compare_uses_last_round_of_each_epoch(client: FinetuneLabClient, seeded_job: str) -> None:
    result = client.training_predictions.compare(seeded_job, from_epoch=1, to_epoch=2)
    assert (result.from_step, result.to_step) == (10, 20)
    assert (result.summary.improved, result.summary.regressed, result.summary.unchanged) == (
        2,
        1,
        1,
    )
    assert sorted(i.sample_index for i in result.improved) == [0, 3]
    assert [i.sample_index for i in result.regressed] == [2]
    assert [i.sample_index for i in result.unchanged] == [1]
    regressed = result.regressed[0]
    assert (regressed.from_prediction, regressed.to_prediction) == ("abcd", "abcx")
    assert regressed.from_char_error_rate == 0.0
    assert regressed.to_char_error_rate == pytest.approx(0.25)
    assert (regressed.from_exact_match, regressed.to_exact_match) == (1.0, 0.0)


def test_compare_across_jobs(client: FinetuneLabClient, seeded_job: str) -> None:
    other = client.jobs.create(name="rerun", model_name="tiny").id
    client.training_predictions.create(other, rerun_rows())
    result = client.training_predictions.compare(seeded_job, from_epoch=2, to_epoch=0, to_job=other)
    assert (result.job_id, result.to_job_id, result.from_step, result.to_step) == (
        seeded_job,
        other,
        20,
        1,
    )
    pairs = {
        name: [(i.from_sample_index, i.to_sample_index) for i in getattr(result, name)]
        for name in RERUN_PAIRS
    }
    assert pairs == RERUN_PAIRS
    assert (result.unmatched.from_, result.unmatched.to) == (0, 1)
    assert result.raw["unmatched"] == {"from": 0, "to": 1}
    assert result.improved[0].prompt_id == "p2"
    # same-job compare has the same shape: to_job_id is the job, nothing unmatched
    same = client.training_predictions.compare(seeded_job, from_epoch=1, to_epoch=2)
    assert same.to_job_id == seeded_job and same.raw["unmatched"] == {"from": 0, "to": 0}


def test_compare_to_unknown_job_raises_not_found(
    client: FinetuneLabClient, seeded_job: str
) -> None:
    with pytest.raises(NotFoundError):
        client.training_predictions.compare(
            seeded_job, from_epoch=2, to_epoch=0, to_job=f"{seeded_job}-none"
        )


def test_iter_walks_every_row_once_in_order(
    client: FinetuneLabClient, server: ServerHandle, api_key: str, unique_job_id: str
) -> None:
    client.jobs.create(id=unique_job_id)
    data = bulk_rows(1234, epochs=3)
    assert client.training_predictions.create(unique_job_id, data).created == 1234
    requests: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [requests.append]}) as http:
        counting = FinetuneLabClient(api_key=api_key, base_url=server.base_url, http_client=http)
        seen = [_key(p) for p in counting.training_predictions.iter(unique_job_id, page_size=100)]
    assert seen == sorted((r["epoch"], r["step"], r["sample_index"]) for r in data)
    assert len(set(seen)) == 1234
    assert 13 <= len(requests) <= 14  # 13 pages (+ possibly one empty page to learn the end)
    assert all(r.url.params["limit"] == "100" for r in requests)

    # Filters apply to the walk too.
    epoch2 = list(client.training_predictions.iter(unique_job_id, epoch=2, page_size=50))
    assert len(epoch2) == 1234 - 2 * 412
    assert {p.epoch for p in epoch2} == {2}


@pytest.mark.parametrize("sort", SORT_KEYS)
def test_iter_with_sort_returns_the_sorted_list(
    client: FinetuneLabClient, server: ServerHandle, api_key: str, seeded_job: str, sort: SortKey
) -> None:
    """Same rows, same order as the paged list with that `sort` (offset pages; no cursor)."""
    listed = client.training_predictions.get(seeded_job, sort=sort, limit=1000)
    assert listed.total_count == len(ORDER) and listed.next_cursor is None
    requests: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [requests.append]}) as http:
        counting = FinetuneLabClient(api_key=api_key, base_url=server.base_url, http_client=http)
        walked = list(counting.training_predictions.iter(seeded_job, sort=sort, page_size=3))
    assert walked == listed.predictions
    # 16 rows, 3 a page: six pages by offset, and the walk stops at the total.
    assert [r.url.params["offset"] for r in requests] == ["0", "3", "6", "9", "12", "15"]
    assert all(r.url.params["sort"] == sort and "cursor" not in r.url.params for r in requests)
    # Filters apply to a sorted walk too.
    epoch1 = list(client.training_predictions.iter(seeded_job, epoch=1, sort=sort, page_size=2))
    assert epoch1 == client.training_predictions.get(seeded_job, epoch=1, sort=sort).predictions


def test_iter_with_sort_is_not_read_order(client: FinetuneLabClient, seeded_job: str) -> None:
    worst = [
        p.char_error_rate
        for p in client.training_predictions.iter(seeded_job, sort="-char_error_rate", page_size=5)
    ]
    assert worst == sorted((CER[p] for preds in ROUNDS.values() for p in preds), reverse=True)
    assert [_key(p) for p in client.training_predictions.iter(seeded_job, page_size=5)] == ORDER


def test_create_chunks_large_lists(
    client: FinetuneLabClient, server: ServerHandle, api_key: str, unique_job_id: str
) -> None:
    client.jobs.create(id=unique_job_id)
    data = bulk_rows(12_001, epochs=2)
    bodies: list[int] = []

    def record(request: httpx.Request) -> None:
        if request.method == "POST":
            bodies.append(len(json.loads(request.content)["predictions"]))

    with httpx.Client(event_hooks={"request": [record]}, timeout=120) as http:
        sdk = FinetuneLabClient(api_key=api_key, base_url=server.base_url, http_client=http)
        result = sdk.training_predictions.create(unique_job_id, data)
        assert bodies == [5000, 5000, 2001]
        assert (result.job_id, result.accepted, result.created, result.updated) == (
            unique_job_id,
            12_001,
            12_001,
            0,
        )
        bodies.clear()
        again = sdk.training_predictions.create(unique_job_id, data[:2500], chunk_size=1000)
        assert bodies == [1000, 1000, 500]
        assert (again.accepted, again.created, again.updated) == (2500, 0, 2500)
    assert client.training_predictions.get(unique_job_id, limit=1).total_count == 12_001
    assert client.jobs.get(unique_job_id).prediction_count == 12_001


def test_create_resend_updates_instead_of_duplicating(
    client: FinetuneLabClient, seeded_job: str
) -> None:
    changed = [dict(r, prediction="abcd") for r in rows() if r["epoch"] == 0]
    result = client.training_predictions.create(seeded_job, changed)
    assert (result.accepted, result.created, result.updated) == (4, 0, 4)
    page = client.training_predictions.get(seeded_job, epoch=0)
    assert page.total_count == 4
    assert {p.prediction for p in page.predictions} == {"abcd"}
    assert client.training_predictions.trends(seeded_job).trends[0].avg_exact_match == 1.0


def test_create_invalid_item_in_later_batch_names_it(
    client: FinetuneLabClient, unique_job_id: str
) -> None:
    client.jobs.create(id=unique_job_id)
    data = bulk_rows(30)
    data[25]["epoch"] = -1
    with pytest.raises(ValidationError) as info:
        client.training_predictions.create(unique_job_id, data, chunk_size=10)
    err = info.value
    assert err.status_code == 422
    assert err.error_type == "validation_error"
    # The server names the index inside the rejected batch; the SDK says where that batch began.
    assert err.response["error"]["details"][0]["loc"][:2] == ["predictions", 5]
    assert "batch starting at item 20" in err.message
    # Batches before the bad one were stored; the bad batch was atomic.
    assert client.training_predictions.get(unique_job_id, limit=1).total_count == 20


def test_create_rejects_bad_chunk_size(client: FinetuneLabClient, seeded_job: str) -> None:
    with pytest.raises(ValueError):
        client.training_predictions.create(seeded_job, rows(), chunk_size=5001)


def test_export_bytes_jsonl_and_csv(client: FinetuneLabClient, seeded_job: str) -> None:
    jsonl = client.training_predictions.export(seeded_job)
    records = [json.loads(line) for line in jsonl.decode().splitlines() if line]
    assert [(r["epoch"], r["step"], r["sample_index"]) for r in records] == ORDER
    assert records[0]["char_error_rate"] == 1.0
    assert records[0]["metrics"] == {"reward": 0.0}

    data = client.training_predictions.export(seeded_job, format="csv", epoch=2)
    table = list(csv.DictReader(io.StringIO(data.decode())))
    assert [int(r["sample_index"]) for r in table] == [0, 1, 2, 3]
    assert [r["prediction"] for r in table] == ROUNDS[(2, 20)]
    assert json.loads(table[3]["metrics"]) == {"reward": 3.0}


def test_export_streams_to_path(client: FinetuneLabClient, seeded_job: str, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "out.parquet"
    written = client.training_predictions.export(seeded_job, format="parquet", path=target)
    assert written == target
    assert not (tmp_path / "out.parquet.part").exists()
    table = pq.read_table(target).to_pylist()
    assert [(r["epoch"], r["step"], r["sample_index"]) for r in table] == ORDER
    assert [r["prediction"] for r in table][:4] == ROUNDS[(0, 0)]

    # A directory gets `<job_id>.<format>` inside it.
    in_dir = client.training_predictions.export(seeded_job, format="jsonl", path=tmp_path, step=5)
    assert in_dir == tmp_path / f"{seeded_job}.jsonl"
    lines = in_dir.read_text().splitlines()
    assert [json.loads(line)["prediction"] for line in lines] == ROUNDS[(1, 5)]


def test_job_ids_are_url_encoded(client: FinetuneLabClient) -> None:
    job_id = f"run:{uuid.uuid4().hex[:12]}.v1"
    client.jobs.create(id=job_id)
    try:
        client.training_predictions.create(job_id, rows()[:4])
        assert client.training_predictions.get(job_id).total_count == 4
        assert client.training_predictions.epochs(job_id).epochs[0].prediction_count == 4
    finally:
        client.jobs.delete(job_id)
