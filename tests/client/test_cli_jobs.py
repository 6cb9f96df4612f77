"""`finetune-lab jobs ...` and naming a job by its name, through CliRunner against the server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from _support.appserver import ServerHandle
from finetune_lab import cli_resolve
from finetune_lab.cli import app
from finetune_lab.client import FinetuneLabClient

from ._data import rows

runner = CliRunner()


@pytest.fixture
def own(server: ServerHandle) -> Iterator[tuple[FinetuneLabClient, list[str]]]:
    """A client and CLI flags of a fresh user: the job list holds this test's jobs only."""
    key = server.create_key(f"cli-jobs-{uuid.uuid4().hex[:8]}")
    with FinetuneLabClient(api_key=key, base_url=server.base_url) as client:
        yield client, ["--api-url", server.base_url, "--api-key", key]


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_jobs_list_table_json_and_status(own: tuple[FinetuneLabClient, list[str]]) -> None:
    client, auth = own
    older = client.jobs.create(id=f"t-{uuid.uuid4().hex[:8]}", name="sft-a", model_name="gpt2")
    client.training_predictions.create(older.id, rows())
    newer = client.jobs.create(name="sft-b")
    client.jobs.update(older.id, status="completed")

    code, out, err = invoke("jobs", "list", *auth)
    assert code == 0, err
    assert older.id in out and newer.id in out and "sft-a" in out and "sft-b" in out
    assert "Showing 2 of 2 jobs" in out
    line = next(line for line in out.splitlines() if older.id in line)
    assert "completed" in line and "gpt2" in line and " 4 " in line and " 16 " in line
    assert "2 / 20" in line  # latest epoch / step

    code, out, err = invoke("jobs", "list", "--json", *auth)
    assert code == 0, err
    listed = json.loads(out)
    assert [job["id"] for job in listed["jobs"]] == [newer.id, older.id]  # newest first
    assert listed["total"] == 2 and listed["jobs"][1]["prediction_count"] == 16

    code, out, _ = invoke("jobs", "list", "--status", "completed", "--json", *auth)
    assert code == 0 and [job["id"] for job in json.loads(out)["jobs"]] == [older.id]
    code, _, err = invoke("jobs", "list", "--status", "done", *auth)
    assert code == 2 and "done" in err


def test_jobs_show_by_id_or_unique_name(
    own: tuple[FinetuneLabClient, list[str]], server: ServerHandle
) -> None:
    client, auth = own
    job = client.jobs.create(
        name="my run", model_name="tiny", config={"predictions": {"frequency": "epoch"}}
    )
    client.training_predictions.create(job.id, rows())
    for ref in (job.id, "my run"):
        code, out, err = invoke("jobs", "show", ref, *auth)
        assert code == 0, err
        assert f"{server.base_url}/#/jobs/{job.id}" in out
        assert "my run" in out and "tiny" in out and '"frequency": "epoch"' in out
    code, out, err = invoke("jobs", "show", "my run", "--json", *auth)
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["id"], shown["round_count"], shown["latest_step"]) == (job.id, 4, 20)


def test_a_name_works_wherever_a_job_is_taken(own: tuple[FinetuneLabClient, list[str]]) -> None:
    client, auth = own
    job = client.jobs.create(name="named-run")
    client.training_predictions.create(job.id, rows())
    code, out, err = invoke("predictions", "epochs", "named-run", *auth)
    assert code == 0, err
    assert "3 epochs" in out and job.id in out
    code, out, err = invoke("predictions", "export", "named-run", "--output", "-", *auth)
    assert code == 0, err
    assert len(out.splitlines()) == 16


def test_ambiguous_and_unknown_names_exit_2(
    own: tuple[FinetuneLabClient, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, auth = own
    monkeypatch.setattr(cli_resolve, "MAX_PAGE_LIMIT", 2)  # the lookup pages through every job
    twins = [client.jobs.create(name="twin").id for _ in range(2)]
    for index in range(3):
        client.jobs.create(name=f"other-{index}")
    code, out, err = invoke("predictions", "trends", "twin", *auth)
    assert code == 2 and out == ""
    assert "2 jobs are named 'twin'" in err and all(twin in err for twin in twins)
    assert len(err.strip().splitlines()) == 1

    code, out, err = invoke("jobs", "show", "nobody", *auth)
    assert code == 2 and out == ""
    assert "no job with id or name 'nobody'" in err


def test_an_id_wins_over_another_jobs_name(own: tuple[FinetuneLabClient, list[str]]) -> None:
    client, auth = own
    target = client.jobs.create(id=f"t-{uuid.uuid4().hex[:8]}", name="real")
    client.jobs.create(name=target.id)  # another job named like the first one's id
    code, out, err = invoke("jobs", "show", target.id, "--json", *auth)
    assert code == 0, err
    assert json.loads(out)["name"] == "real"
