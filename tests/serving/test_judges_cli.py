"""`finetune-lab jobs judges JOB`: the judges' progress and failures, through CliRunner against
the server (both backends)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from _support.appserver import ServerHandle
from _support.fake_openai import FakeOpenAI
from finetune_lab.cli import app
from server._helpers import create_job, ingest, row

from .conftest import NewUser, register_remote
from .test_judges import judge_job, judge_spec, wait_graded

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_jobs_judges_table_json_and_paging(
    server: ServerHandle, new_user: NewUser, fake_openai: FakeOpenAI
) -> None:
    user = new_user()
    auth = ["--api-url", server.base_url, "--api-key", user.key]
    model = register_remote(user.http, fake_openai.base_url, "echo")
    job_id = judge_job(user.http, judge_spec(model["name"]), judge_spec(model["name"], name="b"))
    answers = {0: "7", 1: "abc", 2: "42"}
    ingest(user.http, job_id, [row(1, 10, i, prediction=p) for i, p in answers.items()])
    wait_graded(user.http, job_id)

    code, out, err = invoke("jobs", "judges", job_id, *auth)
    assert code == 0, err
    quality = next(line for line in out.splitlines() if "quality" in line)
    assert model["name"] in quality and "0..10" in quality
    cells = [cell.strip() for cell in quality.split("│")]
    assert cells[-4:-1] == ["1", "2", "0"]  # graded, failed, pending
    assert "Grading runs: 1 completed" in out
    assert "Failures 1-4 of 4" in out
    failure = next(line for line in out.splitlines() if "unparseable" in line)
    assert "1 / 10" in failure and "SCORE: ABC" in failure and " 3 " in failure
    assert "out of range: 42 is not within [0, 10]" in out

    code, out, err = invoke(
        "jobs", "judges", job_id, "--json", "--limit", "1", "--offset", "2", *auth
    )
    assert code == 0, err
    status = json.loads(out)
    assert [(j["name"], j["graded"], j["failed"], j["pending"]) for j in status["judges"]] == [
        ("quality", 1, 2, 0),
        ("b", 1, 2, 0),
    ]
    assert status["failures_total"] == 4 and (status["limit"], status["offset"]) == (1, 2)
    (failure,) = status["failures"]
    assert (failure["sample_index"], failure["judge"]) == (2, "b")  # by (step, sample, judge)
    assert failure["error"] == "out of range: 42 is not within [0, 10]"

    plain = f"plain-{job_id}"
    create_job(user.http, plain)
    code, out, err = invoke("jobs", "judges", plain, *auth)
    assert code == 0, err
    assert f"Job {plain} has no judges" in out
    code, _, err = invoke("jobs", "judges", f"missing-{job_id}", *auth)
    assert code == 2 and "missing-" in err
