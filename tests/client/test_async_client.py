"""`AsyncFinetuneLabClient` against the live server: the same surface as the sync client."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pytest

from _support.appserver import ServerHandle
from _support.net import free_port
from finetune_lab import (
    APIConnectionError,
    AsyncFinetuneLabClient,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from finetune_lab.schema import SORT_KEYS, PredictionIn, SortKey

from ._data import (
    RERUN_PAIRS,
    ROUNDS,
    avg_cer,
    bulk_rows,
    epoch_groups,
    expected_improvement,
    rerun_rows,
    rows,
)

pytestmark = pytest.mark.anyio

ORDER = [(r["epoch"], r["step"], r["sample_index"]) for r in rows()]


async def _seed(client: AsyncFinetuneLabClient, job_id: str) -> None:
    job = await client.jobs.create(id=job_id, name="async", model_name="tiny")
    assert job.job_token
    result = await client.training_predictions.create(job_id, rows())
    assert (result.accepted, result.created, result.updated) == (16, 16, 0)


async def test_reads(async_client: AsyncFinetuneLabClient, unique_job_id: str) -> None:
    await _seed(async_client, unique_job_id)
    tp = async_client.training_predictions

    page = await tp.get(unique_job_id, limit=100)
    assert (page.total_count, page.epoch_count) == (16, 3)
    assert [(p.epoch, p.step, p.sample_index) for p in page.predictions] == ORDER
    filtered = await tp.get(unique_job_id, epoch=1, sample_index=0, limit=1)
    assert filtered.total_count == 2
    assert [p.prediction for p in filtered.predictions] == [ROUNDS[(1, 5)][0]]

    epochs = await tp.epochs(unique_job_id)
    assert [(e.epoch, e.prediction_count, e.latest_step) for e in epochs.epochs] == [
        (0, 4, 0),
        (1, 8, 10),
        (2, 4, 20),
    ]

    trends = await tp.trends(unique_job_id)
    groups = epoch_groups()
    assert [t.avg_char_error_rate for t in trends.trends] == pytest.approx(
        [avg_cer(groups[e]) for e in (0, 1, 2)]
    )
    assert trends.overall_improvement == pytest.approx(expected_improvement())
    by_step = await tp.trends(unique_job_id, group_by="step")
    assert [(t.epoch, t.step) for t in by_step.trends] == list(ROUNDS)

    assert trends.best.exact_match is not None
    assert (trends.best.exact_match.epoch, trends.best.exact_match.step) == (2, 20)
    grid = await tp.matrix(unique_job_id, metric="exact_match", limit=1, offset=1)
    assert grid.total_samples == 4 and len(grid.rounds) == len(ROUNDS)
    assert [(s.sample_index, s.values) for s in grid.samples] == [
        (1, [1.0 if preds[1] == "abcd" else 0.0 for preds in ROUNDS.values()])
    ]

    history = await tp.sample(unique_job_id, 3)
    assert [r.prediction for r in history.rounds] == [preds[3] for preds in ROUNDS.values()]

    compare = await tp.compare(unique_job_id, from_epoch=0, to_epoch=2)
    assert (compare.from_step, compare.to_step) == (0, 20)
    assert (compare.summary.improved, compare.summary.regressed, compare.summary.unchanged) == (
        3,
        0,
        1,
    )
    assert [i.sample_index for i in compare.unchanged] == [2]


async def test_iter_is_an_async_iterator(
    async_client: AsyncFinetuneLabClient, unique_job_id: str
) -> None:
    await async_client.jobs.create(id=unique_job_id)
    data = bulk_rows(1234, epochs=2)
    assert (await async_client.training_predictions.create(unique_job_id, data)).created == 1234
    seen = [
        (p.epoch, p.step, p.sample_index)
        async for p in async_client.training_predictions.iter(unique_job_id, page_size=100)
    ]
    assert seen == [(r["epoch"], r["step"], r["sample_index"]) for r in data]
    assert len(set(seen)) == 1234
    walk = async_client.training_predictions.iter(unique_job_id, step=0, page_size=1000)
    only_first = [p async for p in walk]
    assert len(only_first) == 617


@pytest.mark.parametrize("sort", SORT_KEYS)
async def test_iter_with_sort_returns_the_sorted_list(
    async_client: AsyncFinetuneLabClient, seeded_job: str, sort: SortKey
) -> None:
    tp = async_client.training_predictions
    listed = await tp.get(seeded_job, sort=sort, limit=1000)
    walked = [p async for p in tp.iter(seeded_job, sort=sort, page_size=3)]
    assert len(walked) == listed.total_count == 16
    assert walked == listed.predictions


async def test_create_chunks(async_client: AsyncFinetuneLabClient, unique_job_id: str) -> None:
    await async_client.jobs.create(id=unique_job_id)
    items = [
        PredictionIn(epoch=0, step=0, sample_index=i, prompt="p", prediction="x", ground_truth="x")
        for i in range(5001)
    ]
    result = await async_client.training_predictions.create(unique_job_id, items)
    assert (result.accepted, result.created, result.updated) == (5001, 5001, 0)
    again = await async_client.training_predictions.create(unique_job_id, items[:30], chunk_size=7)
    assert (again.accepted, again.created, again.updated) == (30, 0, 30)
    trends = await async_client.training_predictions.trends(unique_job_id)
    assert trends.trends[0].sample_count == 5001
    assert trends.trends[0].avg_exact_match == 1.0


async def test_export(
    async_client: AsyncFinetuneLabClient, unique_job_id: str, tmp_path: Path
) -> None:
    await _seed(async_client, unique_job_id)
    tp = async_client.training_predictions
    data = await tp.export(unique_job_id, format="csv")
    table = list(csv.DictReader(io.StringIO(data.decode())))
    assert [(int(r["epoch"]), int(r["step"]), int(r["sample_index"])) for r in table] == ORDER

    target = await tp.export(unique_job_id, path=tmp_path / "x.jsonl", epoch=1)
    assert target == tmp_path / "x.jsonl"
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["prediction"] for r in records] == ROUNDS[(1, 5)] + ROUNDS[(1, 10)]

    pq = pytest.importorskip("pyarrow.parquet")
    parquet = await tp.export(unique_job_id, format="parquet", path=tmp_path)
    assert parquet == tmp_path / f"{unique_job_id}.parquet"
    assert pq.read_table(parquet).num_rows == 16


async def test_jobs(async_client: AsyncFinetuneLabClient, unique_job_id: str) -> None:
    created = await async_client.jobs.create(id=unique_job_id, name="a", config={"k": 1})
    assert created.config == {"k": 1}
    resumed = await async_client.jobs.create(id=unique_job_id)
    assert (resumed.id, resumed.job_token) == (unique_job_id, None)
    assert (await async_client.jobs.get(unique_job_id)).name == "a"
    updated = await async_client.jobs.update(unique_job_id, status="failed", name="b")
    assert (updated.status, updated.name) == ("failed", "b")
    listed = await async_client.jobs.list(status="failed", limit=1000)
    assert unique_job_id in [j.id for j in listed.jobs]
    await async_client.training_predictions.create(unique_job_id, rows()[:2])
    deleted = await async_client.jobs.delete(unique_job_id)
    assert (deleted.deleted, deleted.predictions_deleted) == (True, 2)
    with pytest.raises(NotFoundError):
        await async_client.jobs.get(unique_job_id)


async def test_job_token_rotation(
    async_client: AsyncFinetuneLabClient, server: ServerHandle, unique_job_id: str
) -> None:
    old = (await async_client.jobs.create(id=unique_job_id)).job_token
    new = (await async_client.jobs.rotate_token(unique_job_id)).job_token
    assert new and new != old
    async with AsyncFinetuneLabClient(api_key=new, base_url=server.base_url) as by_token:
        assert (await by_token.whoami()).job_id == unique_job_id
        assert (await async_client.jobs.revoke_token(unique_job_id)).job_token is None
        with pytest.raises(AuthenticationError):
            await by_token.whoami()


async def test_auth(async_client: AsyncFinetuneLabClient, server: ServerHandle) -> None:
    me = await async_client.whoami()
    assert (me.user, me.credential) == ("alice", "api_key")
    session = await async_client.create_session(ttl_seconds=600)
    assert session.token.startswith("fls_") and session.user == "alice"
    async with AsyncFinetuneLabClient(api_key=session.token, base_url=server.base_url) as s:
        assert (await s.whoami()).credential == "session"


async def test_errors(
    async_client: AsyncFinetuneLabClient, server: ServerHandle, unique_job_id: str
) -> None:
    async with AsyncFinetuneLabClient(api_key="flk_" + "y" * 43, base_url=server.base_url) as bad:
        with pytest.raises(AuthenticationError) as auth:
            await bad.whoami()
    assert (auth.value.status_code, auth.value.error_type) == (401, "unauthorized")

    key = server.create_key("dave", scopes="production")
    async with AsyncFinetuneLabClient(api_key=key, base_url=server.base_url) as prod:
        with pytest.raises(PermissionDeniedError):
            await prod.jobs.list()

    with pytest.raises(NotFoundError):
        await async_client.training_predictions.epochs(unique_job_id)

    await async_client.jobs.create(id=unique_job_id)
    with pytest.raises(ValidationError):
        await async_client.training_predictions.get(unique_job_id, limit=5000)

    other = server.create_key("erin", scopes="training")
    async with AsyncFinetuneLabClient(api_key=other, base_url=server.base_url) as erin:
        with pytest.raises(ConflictError):
            await erin.jobs.create(id=unique_job_id)


async def test_connection_error_on_closed_port() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncFinetuneLabClient(api_key="k", base_url=url, max_retries=0) as dead:
        with pytest.raises(APIConnectionError):
            await dead.jobs.list()


async def test_user_http_client_is_left_open(server: ServerHandle, api_key: str) -> None:
    http = httpx.AsyncClient()
    async with AsyncFinetuneLabClient(api_key=api_key, base_url=server.base_url, http_client=http):
        pass
    assert not http.is_closed
    await http.aclose()


async def test_compare_across_jobs(
    async_client: AsyncFinetuneLabClient, unique_job_id: str
) -> None:
    await _seed(async_client, unique_job_id)
    other = (await async_client.jobs.create(name="async rerun", model_name="tiny")).id
    await async_client.training_predictions.create(other, rerun_rows())
    result = await async_client.training_predictions.compare(
        unique_job_id, from_epoch=2, to_epoch=0, to_job=other
    )
    assert result.to_job_id == other
    assert {
        name: [(i.from_sample_index, i.to_sample_index) for i in getattr(result, name)]
        for name in RERUN_PAIRS
    } == RERUN_PAIRS
    assert (result.unmatched.from_, result.unmatched.to) == (0, 1)
