"""`finetune-lab predictions ...` through typer's CliRunner against the live server."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _support.appserver import ServerHandle
from _support.net import free_port
from finetune_lab.cli_predictions import SPARK_CHARS, predictions_app, sparkline
from finetune_lab.client import _transport

from ._data import ROUNDS, avg_cer, avg_exact, epoch_groups, expected_improvement

runner = CliRunner()


@pytest.fixture
def auth(server: ServerHandle, api_key: str) -> list[str]:
    return ["--api-url", server.base_url, "--api-key", api_key]


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(predictions_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_list(seeded_job: str, auth: list[str]) -> None:
    code, out, err = invoke("list", seeded_job, "--limit", "5", *auth)
    assert code == 0, err
    assert "Showing 5 of 16 predictions (3 epochs in the job)" in out
    assert "wxyz" in out and "Q0: spell abcd" in out

    code, out, _ = invoke("list", seeded_job, "--epoch", "2", *auth)
    assert code == 0
    assert "Showing 4 of 4 predictions" in out
    assert "0.250" in out  # sample 2 of epoch 2 has CER 0.25
    assert "wxyz" not in out


def test_epochs(seeded_job: str, auth: list[str]) -> None:
    code, out, err = invoke("epochs", seeded_job, *auth)
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    numeric = [[int(c) for c in r if c.isdigit()] for r in rows]
    assert [0, 4, 0] in numeric and [1, 8, 10] in numeric and [2, 4, 20] in numeric
    assert "3 epochs" in out


def test_trends(seeded_job: str, auth: list[str]) -> None:
    code, out, err = invoke("trends", seeded_job, *auth)
    assert code == 0, err
    groups = epoch_groups()
    for epoch in (0, 1, 2):
        assert f"{avg_cer(groups[epoch]):.3f}" in out
        assert f"{avg_exact(groups[epoch]):.3f}" in out
    cer_line = next(line for line in out.splitlines() if line.startswith("avg CER"))
    em_line = next(line for line in out.splitlines() if line.startswith("exact match"))
    # CER falls every epoch (tallest block first), exact match rises (tallest block last).
    cer_spark, em_spark = cer_line.split()[2], em_line.split()[2]
    assert cer_spark == sparkline([avg_cer(groups[e]) for e in (0, 1, 2)]) == "█▇▁"
    assert em_spark == sparkline([avg_exact(groups[e]) for e in (0, 1, 2)]) == "▁▃█"
    assert f"{avg_cer(groups[0]):.3f} → {avg_cer(groups[2]):.3f}" in cer_line
    assert f"{expected_improvement():.1f}%" in out

    code, out, _ = invoke("trends", seeded_job, "--group-by", "step", *auth)
    assert code == 0
    cer_line = next(line for line in out.splitlines() if line.startswith("avg CER"))
    assert len(cer_line.split()[2]) == len(ROUNDS)


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([0.0, 1.0]) == "▁█"
    assert sparkline([0.5, None, 0.5]) == "▄ ▄"
    assert sparkline([1.0, 0.75, 0.0]) == "█▆▁"
    assert len(SPARK_CHARS) == 8


def test_export(seeded_job: str, auth: list[str], tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    code, out, err = invoke("export", seeded_job, "--format", "csv", "--output", str(target), *auth)
    assert code == 0, err
    assert str(target) in out.replace("\n", "")
    with target.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 16
    assert [r["prediction"] for r in table[-4:]] == ROUNDS[(2, 20)]

    code, out, _ = invoke("export", seeded_job, "--output", "-", *auth)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines() if line]
    assert len(records) == 16 and records[0]["prediction"] == "wxyz"


def test_export_default_path_and_parquet(
    seeded_job: str, auth: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("export", seeded_job, "--format", "parquet", *auth)
    assert code == 0, err
    assert pq.read_table(tmp_path / f"{seeded_job}.parquet").num_rows == 16


def test_env_vars_are_the_default(
    seeded_job: str, server: ServerHandle, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINETUNE_LAB_API_URL", server.base_url)
    monkeypatch.setenv("FINETUNE_LAB_API_KEY", api_key)
    code, out, err = invoke("epochs", seeded_job)
    assert code == 0, err
    assert "3 epochs" in out


def test_errors_exit_1_with_one_red_line(
    server: ServerHandle, api_key: str, unique_job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = ["--api-url", server.base_url, "--api-key", api_key]
    code, out, err = invoke("list", unique_job_id, *good)
    assert code == 2  # no job by that id or name: a usage error
    assert out == ""
    assert err.startswith(f"Error: no job with id or name '{unique_job_id}'")
    assert len(err.strip().splitlines()) == 1

    bad = ["--api-url", server.base_url, "--api-key", "flk_" + "z" * 43]
    code, _, err = invoke("trends", unique_job_id, *bad)
    assert (code, err.startswith("Error: 401 unauthorized")) == (1, True)

    monkeypatch.setattr(_transport, "_sleep", lambda _seconds: None)
    dead = ["--api-url", f"http://127.0.0.1:{free_port()}", "--api-key", "k"]
    code, _, err = invoke("epochs", unique_job_id, *dead)
    assert code == 1 and "Could not reach the server" in err

    monkeypatch.delenv("FINETUNE_LAB_API_KEY", raising=False)
    code, _, err = invoke("epochs", unique_job_id, "--api-url", server.base_url)
    assert code == 1 and "FINETUNE_LAB_API_KEY" in err
