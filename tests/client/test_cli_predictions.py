"""`finetune-lab predictions ...` through typer's CliRunner against the live server."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _support.appserver import ServerHandle
from _support.net import free_port
from finetune_lab.cli_predictions import SPARK_CHARS, predictions_app, sparkline
from finetune_lab.client import FinetuneLabClient, _transport

from ._data import (
    ROUNDS,
    avg_cer,
    avg_exact,
    epoch_groups,
    expected_improvement,
    rerun_rows,
    rows,
)

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


# --- list filters, `latest`, export filters, compare -----------------------------------------


def table_rows(out: str) -> list[list[str]]:
    """The body rows of the rich tables in `out`, as stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]


@pytest.fixture
def client(server: ServerHandle, api_key: str) -> Iterator[FinetuneLabClient]:
    with FinetuneLabClient(api_key=api_key, base_url=server.base_url) as c:
        yield c


def test_list_latest_epoch_sample_and_search(seeded_job: str, auth: list[str]) -> None:
    code, out, err = invoke("list", seeded_job, "--epoch", "latest", *auth)
    assert code == 0, err
    assert [row[:3] for row in table_rows(out)] == [["2", "20", str(i)] for i in range(4)]
    assert "Showing 4 of 4 predictions" in out

    code, out, err = invoke("list", seeded_job, "--sample", "2", "--q", "ABCX", *auth)
    assert code == 0, err
    assert [row[:3] for row in table_rows(out)] == [["0", "0", "2"], ["2", "20", "2"]]
    assert "Showing 2 of 2 predictions" in out


def test_list_sort(seeded_job: str, auth: list[str]) -> None:
    code, out, err = invoke("list", seeded_job, "--sort", "-char_error_rate", "--limit", "3", *auth)
    assert code == 0, err
    rows = table_rows(out)
    # Worst first; ties keep epoch, step, sample order.
    assert [(r[:3], r[7]) for r in rows] == [
        (["0", "0", "0"], "1.000"),
        (["0", "0", "1"], "1.000"),
        (["1", "5", "0"], "1.000"),
    ]
    assert "Showing 3 of 16 predictions, sorted by -char_error_rate" in out

    code, out, err = invoke("list", seeded_job, "--sort=char_error_rate", "--epoch", "1", *auth)
    assert code == 0, err
    assert [r[7] for r in table_rows(out)] == ["0.000", "0.000", "0.250", "0.500"] + ["1.000"] * 4

    code, out, err = invoke("list", seeded_job, "--sort=-word_overlap", "--limit", "1", *auth)
    assert code == 0, err
    assert "overlap" in out and len(table_rows(out)[0]) == 9  # the sorted score gets a column

    code, _, err = invoke("list", seeded_job, "--sort", "cer", *auth)
    assert code == 2 and "cer" in err


@pytest.mark.parametrize("value", ["lates", "-1", "1.5", "\uff11"])
def test_bad_epoch_is_a_usage_error(seeded_job: str, auth: list[str], value: str) -> None:
    code, out, err = invoke("list", seeded_job, "--epoch", value, *auth)
    assert (code, out) == (2, "")
    assert "expected 'latest' or an epoch number" in err


def test_latest_of_a_job_without_predictions(
    client: FinetuneLabClient, auth: list[str], unique_job_id: str
) -> None:
    client.jobs.create(id=unique_job_id, name="empty", model_name="tiny")
    for args in (["list", "--epoch", "latest"], ["export", "-o", "-", "--epoch", "latest"]):
        code, out, err = invoke(args[0], unique_job_id, *args[1:], *auth)
        assert (code, out) == (2, ""), err
        assert err.startswith(f"Error: job {unique_job_id} has no predictions yet")
    code, _, err = invoke("compare", unique_job_id, *auth)
    assert code == 2 and "has no predictions yet" in err


def test_export_epoch_and_step(seeded_job: str, auth: list[str], tmp_path: Path) -> None:
    def keys(*args: str) -> list[tuple[int, int, int]]:
        code, out, err = invoke("export", seeded_job, "--output", "-", *args, *auth)
        assert code == 0, err
        records = [json.loads(line) for line in out.splitlines() if line]
        return [(r["epoch"], r["step"], r["sample_index"]) for r in records]

    assert keys("--epoch", "latest") == [(2, 20, i) for i in range(4)]
    assert keys("--step", "5") == [(1, 5, i) for i in range(4)]
    assert keys("--epoch", "1", "--step", "10") == [(1, 10, i) for i in range(4)]
    assert keys("--epoch", "0", "--step", "10") == []

    target = tmp_path / "e1.csv"
    code, _, err = invoke(
        "export", seeded_job, "--format", "csv", "--epoch", "1", "-o", str(target), *auth
    )
    assert code == 0, err
    with target.open(newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"] * 8


def test_compare_defaults_to_previous_vs_latest(seeded_job: str, auth: list[str]) -> None:
    code, out, err = invoke("compare", seeded_job, *auth)
    assert code == 0, err
    assert f"Epoch 1 (step 10) → epoch 2 (step 20) of {seeded_job}" in out
    assert "improved 2 · regressed 1 · unchanged 1" in out
    assert "Improved: top 2 of 2" in out and "Regressed: top 1 of 1" in out
    rows = table_rows(out)
    # Biggest CER drop first: sample 3 (0.5 → 0), then sample 0 (0.25 → 0); then the regression.
    assert [(r[0], r[3], r[4], r[5]) for r in rows] == [
        ("3", "ab", "abcd", "0.500 → 0.000"),
        ("0", "abcx", "abcd", "0.250 → 0.000"),
        ("2", "abcd", "abcx", "0.000 → 0.250"),
    ]


def test_compare_explicit_epochs_top_and_json(
    client: FinetuneLabClient, seeded_job: str, auth: list[str]
) -> None:
    code, out, err = invoke("compare", seeded_job, "--from-epoch", "0", "--top", "1", *auth)
    assert code == 0, err
    assert "Epoch 0 (step 0) → epoch 2 (step 20)" in out
    assert "improved 3 · regressed 0 · unchanged 1" in out
    assert "Improved: top 1 of 3" in out and "Regressed" not in out
    assert len(table_rows(out)) == 1

    # --to-epoch alone: compared with the epoch before it.
    code, out, err = invoke("compare", seeded_job, "--to-epoch", "1", "--json", *auth)
    assert code == 0, err
    assert (
        json.loads(out)
        == client.training_predictions.compare(seeded_job, from_epoch=0, to_epoch=1).raw
    )

    code, out, err = invoke(
        "compare", seeded_job, "--from-epoch", "2", "--to-epoch", "latest", "--json", *auth
    )
    assert code == 0, err
    assert json.loads(out)["summary"] == {"improved": 0, "regressed": 0, "unchanged": 4}


def test_compare_to_job_by_name_defaults_to_both_latest(
    client: FinetuneLabClient, seeded_job: str, auth: list[str]
) -> None:
    name = f"rerun-{seeded_job}"
    other = client.jobs.create(name=name, model_name="tiny").id
    client.training_predictions.create(other, rerun_rows())
    code, out, err = invoke("compare", seeded_job, "--to-job", name, *auth)
    assert code == 0, err
    assert f"{seeded_job} epoch 2 (step 20) → {other} epoch 0 (step 1)" in out
    assert "improved 1 · regressed 2 · unchanged 1" in out
    assert "unmatched: 0 only in the first, 1 only in the second" in out
    # sample numbers differ across the runs: shown as from→to; biggest regression first
    assert [(r[0], r[3], r[4]) for r in table_rows(out)] == [
        ("2→1", "abcx", "abcd"),
        ("3→0", "abcd", "ab"),
        ("0→3", "abcd", "abcx"),
    ]

    code, out, err = invoke(
        "compare", seeded_job, "--to-job", other, "--from-epoch", "1", "--json", *auth
    )
    assert code == 0, err
    assert json.loads(out) == (
        client.training_predictions.compare(seeded_job, from_epoch=1, to_epoch=0, to_job=other).raw
    )

    code, _, err = invoke("compare", seeded_job, "--to-job", "no such job xrun", *auth)
    assert code == 2 and "no such job xrun" in err


def test_compare_errors(client: FinetuneLabClient, seeded_job: str, auth: list[str]) -> None:
    code, out, err = invoke("compare", seeded_job, "--to-epoch", "0", *auth)
    assert (code, out) == (2, "")
    assert err.startswith("Error: no epoch before 0 to compare with")
    assert "--from-epoch" in err and len(err.strip().splitlines()) == 1

    code, _, err = invoke("compare", seeded_job, "--from-epoch", "7", *auth)
    assert code == 1 and err.startswith("Error: 404")

    one_epoch = client.jobs.create(name="one epoch", model_name="tiny").id
    client.training_predictions.create(one_epoch, rows()[:4])
    code, _, err = invoke("compare", one_epoch, *auth)
    assert code == 2 and "has predictions in epoch 0" in err
