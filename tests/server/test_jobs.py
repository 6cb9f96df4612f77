"""Jobs: create (with and without id), resume, list, get, patch, delete, validators config."""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import datetime

import pytest
from sqlalchemy import func, select

from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import job_samples, prediction_texts, predictions, round_rollups

from ._helpers import JOBS, PRED, assert_error, create_job, fetch_all, ingest, new_id, row

STATUSES = ("pending", "running", "completed", "failed", "cancelled")


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_job_shape(job: dict) -> None:
    for field in (
        "id",
        "name",
        "model_name",
        "status",
        "config",
        "created_at",
        "updated_at",
        "prediction_count",
        "round_count",
        "latest_epoch",
        "latest_step",
        "job_token",
    ):
        assert field in job, (field, job)
    assert job["status"] in STATUSES
    assert isinstance(job["config"], dict)
    ts(job["created_at"])
    ts(job["updated_at"])


@pytest.fixture
def fresh_user(server):
    """A client for a brand-new user, so job lists contain only this test's jobs."""
    with server.client(server.create_key(f"u{uuid.uuid4().hex[:10]}")) as client:
        yield client


def test_create_without_id(http):
    resp = http.post(JOBS, json={})
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert_job_shape(job)
    assert re.fullmatch(r"job_[0-9a-f]{32}", job["id"]), job["id"]
    assert job["job_token"].startswith("fjt_")
    assert job["prediction_count"] == 0
    assert job["round_count"] == 0
    assert job["latest_epoch"] is None
    assert job["latest_step"] is None
    assert job["config"] == {}


def test_two_jobs_without_id_get_different_ids(http):
    a = create_job(http)
    b = create_job(http)
    assert a["id"] != b["id"]
    assert a["job_token"] != b["job_token"]


def test_server_made_ids_sort_by_creation(http):
    """The newest job's rows append to the indexes they lead (a random id split their pages
    half full); the id is a UUID version 7's 32 hex digits."""
    made = []
    for _ in range(4):
        made.append(create_job(http)["id"])
        time.sleep(0.002)  # ids of the same millisecond may sort either way
    assert made == sorted(made)
    assert all(uuid.UUID(job_id.removeprefix("job_")).version == 7 for job_id in made)


def test_create_with_id_and_fields(http, unique_job_id):
    config = {
        "predictions": {"sample_count": 4, "validators": {"json_parse": True}},
        "lr": 0.0001,
        "nested": {"list": [1, "two", None]},
    }
    resp = http.post(
        JOBS, json={"id": unique_job_id, "name": "My run ✓", "model_name": "gpt2", "config": config}
    )
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert_job_shape(job)
    assert job["id"] == unique_job_id
    assert job["name"] == "My run ✓"
    assert job["model_name"] == "gpt2"
    assert job["config"] == config
    assert job["job_token"].startswith("fjt_")


@pytest.mark.parametrize("base", ["a", "A.b_c:d-1", "run:2024-01-01T00.00", "LONG"])
def test_valid_ids(http, base):
    suffix = uuid.uuid4().hex
    job_id = (suffix * 4)[:128] if base == "LONG" else f"{base}-{suffix[:6]}"
    assert create_job(http, job_id)["id"] == job_id
    assert http.get(f"{JOBS}/{job_id}").json()["id"] == job_id


@pytest.mark.parametrize(
    "job_id", ["", "has space", "slash/inside", "x" * 129, "ünïcode", "semi;colon", "quote'", 12]
)
def test_invalid_ids_are_422(http, job_id):
    assert_error(http.post(JOBS, json={"id": job_id}), 422)


@pytest.mark.parametrize(
    "body",
    [
        {"unknown": 1},
        {"name": 5},
        {"config": "not an object"},
        {"config": [1, 2]},
        {"name": "x" * 513},
    ],
)
def test_bad_create_body_is_422(http, body):
    assert_error(http.post(JOBS, json=body), 422)


def test_resume_returns_200_without_token(http, unique_job_id):
    first = create_job(
        http,
        unique_job_id,
        name="run",
        model_name="m",
        config={"predictions": {"validators": {"json_parse": True}}},
    )
    ingest(http, unique_job_id, [row(0, 0, 0), row(0, 0, 1)])
    resp = http.post(JOBS, json={"id": unique_job_id})
    assert resp.status_code == 200, resp.text
    again = resp.json()
    assert again["id"] == unique_job_id
    assert again["job_token"] is None
    assert again["created_at"] == first["created_at"]
    assert again["name"] == "run"
    assert again["model_name"] == "m"
    assert again["config"] == first["config"]
    assert again["prediction_count"] == 2
    # the resume did not wipe anything
    assert len(fetch_all(http, unique_job_id)) == 2


def test_get_job(http, unique_job_id):
    created = create_job(http, unique_job_id, name="n", model_name="mm")
    resp = http.get(f"{JOBS}/{unique_job_id}")
    assert resp.status_code == 200
    job = resp.json()
    assert_job_shape(job)
    assert job["id"] == unique_job_id
    assert job["name"] == "n"
    assert job["model_name"] == "mm"
    assert job["created_at"] == created["created_at"]
    assert job["job_token"] is None  # shown once, at creation


def test_get_unknown_job_is_404(http):
    assert_error(http.get(f"{JOBS}/{new_id('nope')}"), 404)
    assert_error(http.patch(f"{JOBS}/{new_id('nope')}", json={"name": "x"}), 404)
    assert_error(http.delete(f"{JOBS}/{new_id('nope')}"), 404)


def test_job_counters_follow_ingest(http, unique_job_id):
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(0, 0, i) for i in range(3)])
    ingest(http, unique_job_id, [row(1, 10, i) for i in range(3)] + [row(1, 20, 0)])
    job = http.get(f"{JOBS}/{unique_job_id}").json()
    assert job["prediction_count"] == 7
    assert job["round_count"] == 3
    assert job["latest_epoch"] == 1
    assert job["latest_step"] == 20
    # a re-send replaces, it does not add
    ingest(http, unique_job_id, [row(1, 20, 0, prediction="again")])
    job = http.get(f"{JOBS}/{unique_job_id}").json()
    assert job["prediction_count"] == 7
    assert job["round_count"] == 3


# --- patch -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", STATUSES)
def test_patch_status(http, unique_job_id, status):
    created = create_job(http, unique_job_id)
    resp = http.patch(f"{JOBS}/{unique_job_id}", json={"status": status})
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == status
    assert ts(job["updated_at"]) >= ts(created["updated_at"])
    assert http.get(f"{JOBS}/{unique_job_id}").json()["status"] == status


def test_patch_name_keeps_status(http, unique_job_id):
    create_job(http, unique_job_id, name="old")
    http.patch(f"{JOBS}/{unique_job_id}", json={"status": "running"})
    resp = http.patch(f"{JOBS}/{unique_job_id}", json={"name": "new name"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "new name"
    assert resp.json()["status"] == "running"
    job = http.get(f"{JOBS}/{unique_job_id}").json()
    assert (job["name"], job["status"]) == ("new name", "running")


def test_patch_both(http, unique_job_id):
    create_job(http, unique_job_id)
    resp = http.patch(f"{JOBS}/{unique_job_id}", json={"status": "completed", "name": "done"})
    assert resp.status_code == 200
    assert (resp.json()["status"], resp.json()["name"]) == ("completed", "done")


@pytest.mark.parametrize(
    "body",
    [
        {"status": "done"},
        {"status": "RUNNING"},
        {"status": 1},
        {"status": ""},
        {"unknown": "x"},
        {"config": {}},
        {"id": "other"},
    ],
)
def test_patch_invalid_is_422(http, unique_job_id, body):
    create_job(http, unique_job_id)
    assert_error(http.patch(f"{JOBS}/{unique_job_id}", json=body), 422)
    job = http.get(f"{JOBS}/{unique_job_id}").json()
    assert job["id"] == unique_job_id


# --- list --------------------------------------------------------------------------------------


def test_list_total_status_filter_limit_offset(fresh_user):
    http = fresh_user
    ids = [create_job(http, new_id("list"))["id"] for _ in range(5)]
    http.patch(f"{JOBS}/{ids[1]}", json={"status": "running"})
    http.patch(f"{JOBS}/{ids[3]}", json={"status": "running"})
    http.patch(f"{JOBS}/{ids[4]}", json={"status": "completed"})

    page = http.get(JOBS).json()
    assert page["total"] == 5
    assert page["limit"] == 50
    assert page["offset"] == 0
    # newest first
    assert [j["id"] for j in page["jobs"]] == list(reversed(ids))
    for job in page["jobs"]:
        assert_job_shape(job)
        assert job["job_token"] is None

    running = http.get(JOBS, params={"status": "running"}).json()
    assert running["total"] == 2
    assert {j["id"] for j in running["jobs"]} == {ids[1], ids[3]}
    assert all(j["status"] == "running" for j in running["jobs"])

    assert http.get(JOBS, params={"status": "failed"}).json() == {
        "jobs": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }

    first = http.get(JOBS, params={"limit": 2}).json()
    second = http.get(JOBS, params={"limit": 2, "offset": 2}).json()
    third = http.get(JOBS, params={"limit": 2, "offset": 4}).json()
    beyond = http.get(JOBS, params={"limit": 2, "offset": 10}).json()
    assert (first["limit"], first["offset"], first["total"]) == (2, 0, 5)
    assert (second["limit"], second["offset"], second["total"]) == (2, 2, 5)
    walked = [j["id"] for p in (first, second, third) for j in p["jobs"]]
    assert walked == list(reversed(ids))
    assert beyond["jobs"] == []
    assert beyond["total"] == 5

    default_status = http.get(f"{JOBS}/{ids[0]}").json()["status"]
    if default_status not in ("running", "completed"):
        page = http.get(JOBS, params={"status": default_status, "limit": 1, "offset": 1}).json()
        assert page["total"] == 2
        assert [j["id"] for j in page["jobs"]] == [ids[0]]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "bogus"},
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"offset": -1},
        {"offset": "x"},
    ],
)
def test_list_invalid_params_are_422(http, params):
    assert_error(http.get(JOBS, params=params), 422)


def test_list_limit_1000_is_allowed(http):
    assert http.get(JOBS, params={"limit": 1000}).status_code == 200


# --- delete ------------------------------------------------------------------------------------


def test_delete_removes_job_and_predictions(http, unique_job_id):
    create_job(http, unique_job_id)
    ingest(http, unique_job_id, [row(e, e * 10, i) for e in range(3) for i in range(4)])
    resp = http.delete(f"{JOBS}/{unique_job_id}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"job_id": unique_job_id, "deleted": True, "predictions_deleted": 12}

    assert_error(http.get(f"{JOBS}/{unique_job_id}"), 404)
    assert_error(http.get(f"{PRED}/{unique_job_id}"), 404)
    assert_error(http.get(f"{PRED}/{unique_job_id}/epochs"), 404)
    assert_error(http.get(f"{PRED}/{unique_job_id}/trends"), 404)
    assert_error(http.delete(f"{JOBS}/{unique_job_id}"), 404)

    # the same id can be used again and starts empty: predictions and rollups are gone
    recreated = create_job(http, unique_job_id)
    assert recreated["prediction_count"] == 0
    page = http.get(f"{PRED}/{unique_job_id}").json()
    assert page["predictions"] == []
    assert page["total_count"] == 0
    assert page["epoch_count"] == 0
    assert http.get(f"{PRED}/{unique_job_id}/epochs").json()["epochs"] == []
    trends = http.get(f"{PRED}/{unique_job_id}/trends").json()
    assert trends["trends"] == []
    assert trends["overall_improvement"] is None


def test_delete_leaves_other_jobs_alone(http):
    keep, drop = new_id(), new_id()
    for job_id in (keep, drop):
        create_job(http, job_id)
        ingest(http, job_id, [row(0, 0, 0), row(0, 0, 1)])
    assert http.delete(f"{JOBS}/{drop}").json()["predictions_deleted"] == 2
    assert len(fetch_all(http, keep)) == 2
    assert http.get(f"{JOBS}/{keep}").json()["prediction_count"] == 2


def test_delete_job_without_predictions(http, unique_job_id):
    create_job(http, unique_job_id)
    resp = http.delete(f"{JOBS}/{unique_job_id}")
    assert resp.status_code == 200
    assert resp.json()["predictions_deleted"] == 0


# --- validators config -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"predictions": {"validators": {"json_schema": {"type": 12}}}},
        {"predictions": {"validators": {"json_schema": {"type": "no-such-type"}}}},
        {"predictions": {"validators": {"json_schema": {"required": "name"}}}},
        {"predictions": {"validators": {"json_schema": "not a schema"}}},
        {"predictions": {"validators": {"json_schema": [1, 2]}}},
        {"predictions": {"validators": "yes"}},
        {"predictions": "x"},
    ],
)
def test_bad_validators_config_is_422(http, config):
    job_id = new_id()
    assert_error(http.post(JOBS, json={"id": job_id, "config": config}), 422)
    assert_error(http.get(f"{JOBS}/{job_id}"), 404)


def test_good_validators_config_is_kept(http, unique_job_id):
    config = {
        "predictions": {"validators": {"json_parse": True, "json_schema": {"type": "object"}}}
    }
    job = create_job(http, unique_job_id, config=config)
    assert job["config"] == config


def _upload_until_refused(
    server, api_key: str, job_id: str, first_stored: threading.Event, statuses: list[int]
) -> None:
    """300-row rounds of `job_id` back to back until one is refused."""
    with server.client(api_key) as http:
        for step in range(40):
            rows = [row(0, step, i, prompt=f"p{step}-{i}") for i in range(300)]
            resp = http.post(f"{PRED}/{job_id}", json={"predictions": rows})
            statuses.append(resp.status_code)
            first_stored.set()
            if resp.status_code != 200:
                return


def _rows_of(db: Database, job_id: str) -> dict[str, int]:
    with db.read() as conn:
        return {
            table.name: int(conn.scalar(select(func.count()).where(table.c.job_id == job_id)))
            for table in (predictions, prediction_texts, job_samples, round_rollups)
        }


def test_delete_while_the_job_ingests_leaves_no_rows_behind(server, api_key):
    """A deletion racing an upload of the same job removes everything the upload stored.
    PostgreSQL used to keep the rows of an ingest in flight: the deletion's DELETE ran before
    they were committed, then it waited for the job row and removed only the job."""
    db = Database(server.database_url)
    orphans: list[tuple[str, dict[str, int]]] = []
    try:
        for attempt in range(10):
            job_id = new_id()
            with server.client(api_key) as http:
                create_job(http, job_id)
            first_stored, statuses = threading.Event(), []
            writer = threading.Thread(
                target=_upload_until_refused,
                args=(server, api_key, job_id, first_stored, statuses),
            )
            writer.start()
            assert first_stored.wait(60)
            time.sleep(0.005 * attempt)
            with server.client(api_key) as http:
                assert http.delete(f"{JOBS}/{job_id}").status_code == 200
            writer.join(120)
            assert set(statuses) <= {200, 404} and statuses[-1] == 404, statuses
            left = _rows_of(db, job_id)
            if any(left.values()):
                orphans.append((job_id, left))
    finally:
        db.dispose()
    assert orphans == []
