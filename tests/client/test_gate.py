"""The checkpoint gate: `client.training_predictions.gate` and `finetune-lab predictions gate`,
against the live server on both backends (seeded history: tests/client/_data.py)."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from _support.appserver import ServerHandle
from _support.net import free_port
from finetune_lab import AsyncFinetuneLabClient, FinetuneLabClient
from finetune_lab.cli_gate import parse_thresholds
from finetune_lab.cli_predictions import predictions_app
from finetune_lab.client import _transport
from finetune_lab.client.gate import GateCheck
from finetune_lab.errors import NotFoundError, ValidationError

from ._data import ROUNDS, avg_cer, avg_exact

runner = CliRunner()

LATEST = ROUNDS[(2, 20)]
EPOCH_1_LAST = ROUNDS[(1, 10)]
# `reward` is the sample index in every row: its round average is (0 + 1 + 2 + 3) / 4.
REWARD = 1.5


def by_metric(checks: list[GateCheck]) -> dict[tuple[str, str], GateCheck]:
    return {(c.metric, c.op): c for c in checks}


def test_latest_round_passes_and_fails(client: FinetuneLabClient, seeded_job: str) -> None:
    result = client.training_predictions.gate(
        seeded_job,
        min={"exact_match": 0.75, "reward": REWARD},
        max={"char_error_rate": 0.1, "length_ratio": 1.0},
    )
    assert result.passed
    assert (result.round.epoch, result.round.step, result.round.sample_count) == (2, 20, 4)
    checks = by_metric(result.checks)
    assert checks["exact_match", "min"].value == pytest.approx(avg_exact(LATEST)) == 0.75
    assert checks["char_error_rate", "max"].value == pytest.approx(avg_cer(LATEST))
    assert checks["reward", "min"].value == pytest.approx(REWARD)
    assert all(c.passed and c.reason is None for c in result.checks)
    assert [c.metric for c in result.checks] == [
        "exact_match",
        "reward",
        "char_error_rate",
        "length_ratio",
    ]

    result = client.training_predictions.gate(
        seeded_job, min={"exact_match": 0.8}, max={"char_error_rate": 0.1}
    )
    assert not result.passed
    em, cer = result.checks
    assert (em.metric, em.op, em.threshold, em.passed) == ("exact_match", "min", 0.8, False)
    assert em.reason == "0.75 < 0.8"
    assert cer.passed
    assert result.to_dict()["checks"][0] == {
        "metric": "exact_match",
        "op": "min",
        "threshold": 0.8,
        "value": 0.75,
        "passed": False,
        "reason": "0.75 < 0.8",
    }


def test_epoch_and_step_pick_the_round(client: FinetuneLabClient, seeded_job: str) -> None:
    gate = client.training_predictions.gate
    result = gate(seeded_job, min={"exact_match": 0.5}, epoch=1)
    assert (result.round.epoch, result.round.step) == (1, 10)  # the epoch's last round
    assert result.checks[0].value == pytest.approx(avg_exact(EPOCH_1_LAST))
    assert result.passed

    result = gate(seeded_job, max={"char_error_rate": 0.5}, step=5)
    assert (result.round.epoch, result.round.step) == (1, 5)
    assert result.checks[0].value == pytest.approx(avg_cer(ROUNDS[(1, 5)])) == 1.0
    assert not result.passed

    with pytest.raises(NotFoundError, match=r"no predictions in epoch 7 \(epochs: 0, 1, 2\)"):
        gate(seeded_job, min={"exact_match": 0.5}, epoch=7)
    with pytest.raises(NotFoundError, match=r"no predictions at step 7 \(steps: 0, 5, 10, 20\)"):
        gate(seeded_job, min={"exact_match": 0.5}, step=7)


def test_metric_without_a_value_fails_its_check(
    client: FinetuneLabClient, unique_job_id: str
) -> None:
    """A null average (no validators; a custom metric absent from the round) is a failed check
    with its reason, never an error or a pass."""
    client.jobs.create(id=unique_job_id, model_name="tiny")
    row = {"sample_index": 0, "prompt": "p", "ground_truth": "a", "prediction": "a"}
    client.training_predictions.create(
        unique_job_id,
        [
            {**row, "epoch": 0, "step": 0, "metrics": {"bleu": 0.5}},
            {**row, "epoch": 1, "step": 10},
        ],
    )
    result = client.training_predictions.gate(
        unique_job_id, min={"validation_pass_rate": 0.0, "bleu": 0.0, "exact_match": 1.0}
    )
    assert not result.passed
    assert (result.round.epoch, result.round.step) == (1, 10)
    vpr, bleu, em = result.checks
    assert (vpr.value, vpr.passed, vpr.reason) == (
        None,
        False,
        "no value for validation_pass_rate in this round",
    )
    assert (bleu.value, bleu.passed, bleu.reason) == (
        None,
        False,
        "no value for bleu in this round",
    )
    assert em.passed and em.value == 1.0
    # The round that has it is judged on it.
    assert client.training_predictions.gate(unique_job_id, min={"bleu": 0.5}, step=0).passed


def test_bad_arguments(client: FinetuneLabClient, seeded_job: str) -> None:
    gate = client.training_predictions.gate
    with pytest.raises(
        ValidationError, match=r"unknown metric 'bleu' .*known: exact_match.*reward"
    ):
        gate(seeded_job, min={"bleu": 0.5})
    with pytest.raises(ValidationError, match="at least one threshold"):
        gate(seeded_job)
    with pytest.raises(ValidationError, match="epoch or step, not both"):
        gate(seeded_job, min={"exact_match": 0.5}, epoch=1, step=10)
    with pytest.raises(ValidationError, match="must be finite"):
        gate(seeded_job, min={"reward": float("nan")})
    with pytest.raises(ValidationError, match=r"within \[0, 1\]"):
        gate(seeded_job, min={"exact_match": 90})
    with pytest.raises(ValidationError, match="must be a number"):
        gate(seeded_job, max={"char_error_rate": "0.1"})  # type: ignore[dict-item]
    with pytest.raises(NotFoundError):  # the server's 404
        gate(f"t-{uuid.uuid4().hex}", min={"exact_match": 0.5})
    empty = f"t-{uuid.uuid4().hex}"
    client.jobs.create(id=empty, model_name="tiny")
    with pytest.raises(NotFoundError, match="has no predictions yet"):
        gate(empty, min={"exact_match": 0.5})


@pytest.mark.anyio
async def test_async_gate(async_client: AsyncFinetuneLabClient, seeded_job: str) -> None:
    result = await async_client.training_predictions.gate(
        seeded_job, min={"exact_match": 0.5}, max={"char_error_rate": 0.2}, epoch=1
    )
    assert result.passed and (result.round.epoch, result.round.step) == (1, 10)
    with pytest.raises(ValidationError, match="unknown metric"):
        await async_client.training_predictions.gate(seeded_job, min={"nope": 1})


# --- CLI --------------------------------------------------------------------------------------


@pytest.fixture
def auth(server: ServerHandle, api_key: str) -> list[str]:
    return ["--api-url", server.base_url, "--api-key", api_key]


def gate(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(predictions_app, ["gate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_pass_fail_and_json(
    client: FinetuneLabClient, seeded_job: str, auth: list[str]
) -> None:
    code, out, err = gate(
        seeded_job, "--min", "exact_match=0.75", "--max", "char_error_rate=0.1", *auth
    )
    assert code == 0, err
    assert "epoch 2, step 20 (4 samples)" in out
    assert "≥ 0.75" in out and "0.7500" in out and "≤ 0.1" in out and "0.0625" in out
    assert "PASSED: all 2 checks hold" in out

    code, out, err = gate(
        seeded_job, "--min", "exact_match=0.9", "--min", "validation_pass_rate=0.5", *auth
    )
    assert code == 1, err
    assert "0.75 < 0.9" in out
    assert "no value for validation_pass_rate in this round" in out
    assert "FAILED: 2 of 2 checks failed" in out

    code, out, err = gate(seeded_job, "--min", "reward=1.5", "--epoch", "1", "--json", *auth)
    assert code == 0, err
    assert json.loads(out) == {
        "job_id": seeded_job,
        "round": {"epoch": 1, "step": 10, "sample_count": 4},
        "checks": [
            {
                "metric": "reward",
                "op": "min",
                "threshold": 1.5,
                "value": 1.5,
                "passed": True,
                "reason": None,
            }
        ],
        "passed": True,
    }

    code, out, _ = gate(seeded_job, "--max", "char_error_rate=0.5", "--step", "5", "--json", *auth)
    assert code == 1
    verdict = json.loads(out)
    assert verdict["passed"] is False and verdict["round"]["step"] == 5
    assert verdict["checks"][0]["value"] == 1.0

    # JOB by its (unique) name, like the other predictions commands.
    name = f"gate-{uuid.uuid4().hex[:8]}"
    job_id = f"t-{uuid.uuid4().hex}"
    client.jobs.create(id=job_id, name=name, model_name="tiny")
    client.training_predictions.create(
        job_id,
        [
            {
                "epoch": 0,
                "step": 0,
                "sample_index": 0,
                "prompt": "p",
                "prediction": "x",
                "ground_truth": "x",
            }
        ],
    )
    code, out, err = gate(name, "--min", "exact_match=1", "--json", *auth)
    assert code == 0, err
    assert json.loads(out)["job_id"] == job_id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min", "bleu=0.5"], "unknown metric 'bleu'"),
        (["--min", "exact_match=0.5", "--epoch", "9"], "no predictions in epoch 9"),
        (["--min", "exact_match=0.5", "--step", "9"], "no predictions at step 9"),
        (["--min", "exact_match=0.5", "--epoch", "1", "--step", "10"], "epoch or step, not both"),
        (["--min", "exact_match"], "expected METRIC=VALUE, got 'exact_match'"),
        (["--max", "char_error_rate=low"], "'low' is not a number"),
        (["--min", "exact_match=0.5", "--min", "exact_match=0.6"], "given twice"),
        (["--min", "exact_match=90"], "within [0, 1]"),
        ([], "at least one threshold"),
    ],
)
def test_cli_errors_exit_2(seeded_job: str, auth: list[str], args: list[str], message: str) -> None:
    code, out, err = gate(seeded_job, *args, *auth)
    assert code == 2, (out, err)
    assert message in " ".join(err.split())
    assert out == ""


def test_cli_job_errors_exit_2(
    client: FinetuneLabClient, unique_job_id: str, auth: list[str]
) -> None:
    code, _, err = gate(f"no-such-job-{uuid.uuid4().hex}", "--min", "exact_match=0.5", *auth)
    assert code == 2
    assert "no job with id or name" in err
    client.jobs.create(id=unique_job_id, model_name="tiny")
    code, _, err = gate(unique_job_id, "--min", "exact_match=0.5", *auth)
    assert code == 2
    assert "has no predictions yet" in err


def test_cli_server_unreachable_exits_2(
    monkeypatch: pytest.MonkeyPatch, unique_job_id: str
) -> None:
    """Exit 1 means "the checkpoint failed"; a gate that could not judge must not look like it."""
    monkeypatch.setattr(_transport, "_sleep", lambda _seconds: None)
    dead = ["--api-url", f"http://127.0.0.1:{free_port()}", "--api-key", "k"]
    code, _, err = gate(unique_job_id, "--min", "exact_match=0.5", *dead)
    assert code == 2
    assert "Could not reach the server" in err


def test_parse_thresholds() -> None:
    assert parse_thresholds(["exact_match=0.9", "a=b=0.5", "x=1e-3"]) == {
        "exact_match": 0.9,
        "a=b": 0.5,
        "x": 0.001,
    }
    for bad in ("=0.5", "nothing", "m="):
        with pytest.raises(ValueError):
            parse_thresholds([bad])
