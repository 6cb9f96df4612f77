"""`client.jobs`, `whoami` and `create_session` against the live server."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from _support.appserver import ServerHandle
from finetune_lab import (
    AuthenticationError,
    FinetuneLabClient,
    NotFoundError,
    PermissionDeniedError,
)

from ._data import rows


def test_create_get_resume(client: FinetuneLabClient, unique_job_id: str) -> None:
    config = {"lr": 0.001, "predictions": {"sample_count": 4}}
    job = client.jobs.create(id=unique_job_id, name="first", model_name="gpt2", config=config)
    assert (job.id, job.name, job.model_name, job.status) == (
        unique_job_id,
        "first",
        "gpt2",
        "pending",
    )
    assert job.config["lr"] == 0.001
    assert job.job_token and job.job_token.startswith("fjt_")
    assert job.raw["id"] == unique_job_id

    # The same id again resumes the job: no new token, same job.
    resumed = client.jobs.create(id=unique_job_id, name="first")
    assert resumed.id == unique_job_id
    assert resumed.job_token is None
    assert resumed.created_at == job.created_at

    client.training_predictions.create(unique_job_id, rows())
    fetched = client.jobs.get(unique_job_id)
    assert fetched.prediction_count == 16
    assert fetched.round_count == 4
    assert (fetched.latest_epoch, fetched.latest_step) == (2, 20)
    assert fetched.job_token is None


def test_create_without_id_generates_one(client: FinetuneLabClient) -> None:
    job = client.jobs.create(name="anonymous")
    try:
        assert job.id.startswith("job_") and len(job.id) == 4 + 32
        assert job.status == "pending" and job.name == "anonymous"
    finally:
        client.jobs.delete(job.id)


def test_list_update_delete(client: FinetuneLabClient) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = [f"t-list-{tag}-{i}" for i in range(3)]
    for job_id in ids:
        client.jobs.create(id=job_id, name=f"list {tag}")

    updated = client.jobs.update(ids[1], status="running", name="renamed")
    assert (updated.status, updated.name) == ("running", "renamed")
    assert updated.updated_at >= updated.created_at
    assert client.jobs.update(ids[1], status="completed").name == "renamed"  # name untouched

    page = client.jobs.list(limit=1000)
    listed = [j.id for j in page.jobs if j.id in ids]
    assert listed == list(reversed(ids))  # newest first
    assert page.total >= 3 and page.limit == 1000 and page.offset == 0

    completed = client.jobs.list(status="completed", limit=1000)
    assert ids[1] in [j.id for j in completed.jobs]
    assert all(j.status == "completed" for j in completed.jobs)

    small = client.jobs.list(limit=1, offset=1)
    assert (small.limit, small.offset, len(small.jobs)) == (1, 1, 1)
    assert small.total == page.total

    client.training_predictions.create(ids[0], rows()[:5])
    deleted = client.jobs.delete(ids[0])
    assert (deleted.job_id, deleted.deleted, deleted.predictions_deleted) == (ids[0], True, 5)
    with pytest.raises(NotFoundError):
        client.jobs.get(ids[0])
    for job_id in ids[1:]:
        client.jobs.delete(job_id)


def test_whoami_and_session(client: FinetuneLabClient, server: ServerHandle) -> None:
    me = client.whoami()
    assert (me.user, me.credential) == ("alice", "api_key")
    assert "all" in me.scopes
    assert me.job_id is None

    session = client.create_session(ttl_seconds=120)
    assert session.token.startswith("fls_")
    assert session.token_type == "bearer"
    assert session.user == "alice"
    remaining = (session.expires_at - datetime.now(timezone.utc)).total_seconds()
    assert 60 < remaining <= 125

    with FinetuneLabClient(api_key=session.token, base_url=server.base_url) as by_session:
        who = by_session.whoami()
        assert (who.user, who.credential) == ("alice", "session")
        assert by_session.jobs.list(limit=1).total >= 0


def test_job_token_can_only_write_its_own_predictions(
    client: FinetuneLabClient, server: ServerHandle, unique_job_id: str
) -> None:
    token = client.jobs.create(id=unique_job_id).job_token
    assert token
    with FinetuneLabClient(api_key=token, base_url=server.base_url) as by_token:
        assert by_token.training_predictions.create(unique_job_id, rows()[:3]).created == 3
        with pytest.raises(PermissionDeniedError) as info:
            by_token.training_predictions.get(unique_job_id)
        assert info.value.status_code == 403
    assert client.training_predictions.get(unique_job_id).total_count == 3


def test_rotate_and_revoke_a_job_token(
    client: FinetuneLabClient, server: ServerHandle, unique_job_id: str
) -> None:
    old = client.jobs.create(id=unique_job_id).job_token
    rotated = client.jobs.rotate_token(unique_job_id)
    assert rotated.id == unique_job_id and rotated.job_token and rotated.job_token != old
    stale = FinetuneLabClient(api_key=old, base_url=server.base_url, max_retries=0)
    with stale, pytest.raises(AuthenticationError):
        stale.training_predictions.create(unique_job_id, rows()[:1])
    with FinetuneLabClient(api_key=rotated.job_token, base_url=server.base_url) as fresh:
        assert fresh.training_predictions.create(unique_job_id, rows()[:1]).created == 1
        assert client.jobs.revoke_token(unique_job_id).job_token is None
        with pytest.raises(AuthenticationError):
            fresh.whoami()
    with pytest.raises(NotFoundError):
        client.jobs.rotate_token(f"{unique_job_id}-missing")


def test_revoked_or_bogus_session_is_rejected(server: ServerHandle) -> None:
    bogus = FinetuneLabClient(api_key="fls_" + "A" * 43, base_url=server.base_url)
    with bogus, pytest.raises(AuthenticationError):
        bogus.whoami()
