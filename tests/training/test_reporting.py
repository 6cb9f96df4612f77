"""What the callback reports beyond the server: the Trainer's loggers, custom metrics, stopping
on quality, and where the run's results are."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest

from _support.appserver import ServerHandle
from finetune_lab.client import FinetuneLabClient
from finetune_lab.training import PredictionsCallback
from finetune_lab.training.announce import announce
from finetune_lab.training.toy import RECORD_SCHEMA

from .conftest import RunTrainer, Toy

ROUND_KEYS = (
    "exact_match",
    "char_error_rate",
    "length_ratio",
    "word_overlap",
    "validation_pass_rate",
)


@pytest.fixture
def client(sqlite_server: ServerHandle) -> FinetuneLabClient:
    key = sqlite_server.create_key("reporter")
    return FinetuneLabClient(api_key=key, base_url=sqlite_server.base_url)


def round_entries(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in log_history if any(k.startswith("predictions/") for k in entry)]


def answer_length(prediction: str, ground_truth: str | None, sample: Any) -> float:
    assert set(sample) >= {"prompt", "completion"}  # the record as given
    return float(len(prediction))


def test_round_averages_reach_the_trainer_loggers_and_equal_the_servers(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    tensorboard = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    callback = PredictionsCallback(
        toy.held_out, client=client, sample_count=4, frequency="steps", step_interval=2,
        max_new_tokens=12, validators={"json_schema": RECORD_SCHEMA},
        metrics={"answer_length": answer_length}, spool_dir=tmp_path / "spool",
    )  # fmt: skip
    logs = tmp_path / "tb"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(logs))
    trainer = run_trainer(
        [callback], epochs=1, report_to=["tensorboard"], logging_strategy="steps",
        logging_steps=2,
    )  # fmt: skip
    entries = round_entries(trainer.state.log_history)
    # One entry per round, the baseline first: the k-th entry is the k-th round.
    assert [entry["step"] for entry in entries] == [0, 2, 4]
    # Averages only: no prompt or answer text reaches third-party loggers.
    keys = {f"predictions/{name}" for name in (*ROUND_KEYS, "answer_length")} | {"epoch", "step"}
    assert all(set(entry) == keys for entry in entries)
    # A round in on_step_end must not cancel the Trainer's own loss log at that step.
    assert [e["step"] for e in trainer.state.log_history if "loss" in e] == [2, 4]

    trends = client.training_predictions.trends(callback.job_id, group_by="step").trends
    assert [t.step for t in trends] == [0, 2, 4]
    for entry, point in zip(entries, trends, strict=True):
        expected = {
            "exact_match": point.avg_exact_match,
            "char_error_rate": point.avg_char_error_rate,
            "length_ratio": point.avg_length_ratio,
            "word_overlap": point.avg_word_overlap,
            "validation_pass_rate": point.validation_pass_rate,
            "answer_length": point.metrics["answer_length"],
        }
        got = {name: entry.get(f"predictions/{name}") for name in expected}
        assert got == expected  # the same numbers, not just close ones
        assert all(value is not None for value in got.values())

    # A real logger (TensorBoard's event files, read back) got every round at its step.
    accumulator = tensorboard.EventAccumulator(str(logs))
    accumulator.Reload()
    for name in (*ROUND_KEYS, "answer_length"):
        scalars = accumulator.Scalars(f"train/predictions/{name}")
        assert [s.step for s in scalars] == [0, 2, 4]
        for scalar, entry in zip(scalars, entries, strict=True):
            assert scalar.value == pytest.approx(entry[f"predictions/{name}"], rel=1e-6)


def test_custom_metrics_land_in_rows_and_bad_ones_are_skipped(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    seen: list[Any] = []

    def first_char_matches(prediction: str, truth: str | None, sample: Any) -> float | None:
        seen.append(sample)
        if not truth:
            return None
        return float(prediction[:1] == truth[:1])

    def boom(prediction: str, truth: str | None, sample: Any) -> float:
        raise ZeroDivisionError("no way")

    callback = PredictionsCallback(
        toy.held_out, client=client, sample_count=3, max_new_tokens=6,
        spool_dir=tmp_path / "spool",
        metrics={
            "first_char": first_char_matches,
            "boom": boom,
            "nan": lambda p, t, s: math.nan,
            "text": lambda p, t, s: "0.5",
            "skip": lambda p, t, s: None,
            "flag": lambda p, t, s: True,
        },
    )  # fmt: skip
    trainer = run_trainer([callback], epochs=1)
    assert trainer.state.global_step == 4  # nothing stopped training
    rows = list(client.training_predictions.iter(callback.job_id))
    assert len(rows) == 6
    for row in rows:
        assert row.metrics is not None and set(row.metrics) == {"first_char", "flag"}
        assert row.metrics["flag"] == 1.0
        assert row.metrics["first_char"] == float(row.prediction[:1] == row.ground_truth[:1])
    assert all(sample in toy.held_out for sample in seen)  # the record as given
    for name in ("boom", "nan", "text"):
        assert f"custom metric '{name}' at step 0" in caplog.text
    assert "ZeroDivisionError: no way" in caplog.text and "returned 'nan'" not in caplog.text
    job = client.jobs.get(callback.job_id)
    assert job.config["predictions"]["metrics"] == sorted(callback.recorder.metrics)


def test_stop_when_every_target_is_met(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    # Always met (CER <= 1, exact match >= 0): training stops after the first training round,
    # never at the baseline.
    callback = PredictionsCallback(
        toy.held_out, client=client, sample_count=2, frequency="steps", step_interval=1,
        max_new_tokens=4, stop_when={"exact_match": 0.0, "char_error_rate": 1.0},
        spool_dir=tmp_path / "spool",
    )  # fmt: skip
    trainer = run_trainer([callback], epochs=2)
    assert trainer.state.global_step == 1
    assert callback.stopped_reason and "stop_when" in callback.stopped_reason
    assert "stopping training at step 1" in caplog.text
    steps = {r.step for r in client.training_predictions.iter(callback.job_id)}
    assert steps == {0, 1}
    config = client.jobs.get(callback.job_id).config["predictions"]
    assert config["stop_when"] == {"exact_match": 0.0, "char_error_rate": 1.0}


def test_a_target_not_met_keeps_training(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path
) -> None:
    callback = PredictionsCallback(
        toy.held_out, client=client, sample_count=2, frequency="steps", step_interval=2,
        max_new_tokens=4, metrics={"zero": lambda p, t, s: 0.0},
        stop_when={"exact_match": 0.0, "zero": 0.5}, spool_dir=tmp_path / "spool",
    )  # fmt: skip
    trainer = run_trainer([callback], epochs=1)
    assert trainer.state.global_step == 4 and callback.stopped_reason is None


def test_patience_stops_after_rounds_without_improvement(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path
) -> None:
    # A constant metric never improves on the baseline: rounds at 1 and 2 exhaust patience=2.
    callback = PredictionsCallback(
        toy.held_out, client=client, sample_count=2, frequency="steps", step_interval=1,
        max_new_tokens=4, metrics={"constant": lambda p, t, s: 0.5}, patience=2,
        monitor="constant", spool_dir=tmp_path / "spool",
    )  # fmt: skip
    trainer = run_trainer([callback], epochs=2)
    assert trainer.state.global_step == 2
    assert callback.stopped_reason == "constant did not improve on 0.5 for 2 rounds"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stop_when": {"length_ratio": 1.0}}, "no better direction"),
        ({"stop_when": {"bleu": 0.5}}, "unknown score 'bleu'"),
        ({"stop_when": {"exact_match": 1.5}}, r"within \[0, 1\]"),
        ({"stop_when": {"exact_match": math.nan}}, "finite"),
        ({"stop_when": {"exact_match": "0.9"}}, "must be a number"),
        ({"stop_when": {"exact_match": True}}, "must be a number"),
        ({"stop_when": {}}, "at least one"),
        ({"stop_when": {"validation_pass_rate": 0.9}}, "needs validators"),
        ({"patience": 0}, "patience"),
        ({"patience": 2.5}, "patience"),
        ({"monitor": "exact_match"}, "monitor needs patience"),
        ({"patience": 2, "monitor": "nope"}, "unknown score 'nope'"),
        ({"metrics": {"exact_match": len}}, "built-in score"),
        ({"metrics": {"x" * 129: len}}, "1..128 characters"),
        ({"metrics": {"ok": 3}}, "callable"),
        ({"validators": {"json_schema": {"type": 5}}}, "not a valid JSON Schema"),
    ],
)
def test_bad_stop_and_metric_settings_fail_at_construction(
    toy: Toy, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PredictionsCallback(toy.held_out, **kwargs)


def test_custom_metric_and_validation_targets_are_accepted(toy: Toy) -> None:
    callback = PredictionsCallback(
        toy.held_out, metrics={"score": len}, validators={"json_parse": True},
        stop_when={"score": 40, "validation_pass_rate": 1}, patience=3,
    )  # fmt: skip
    assert callback.stop_rule.targets == {"score": 40.0, "validation_pass_rate": 1.0}
    assert callback.stop_rule.monitor == "char_error_rate"  # the default with patience


def test_the_run_says_where_its_results_are(
    toy: Toy, run_trainer: RunTrainer, sqlite_server: ServerHandle, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    key = sqlite_server.create_key("announcer")
    client = FinetuneLabClient(api_key=key, base_url=sqlite_server.base_url)
    callback = PredictionsCallback(
        toy.held_out, client=client, sample_count=1, max_new_tokens=2,
        spool_dir=tmp_path / "spool",
    )  # fmt: skip
    run_trainer([callback], epochs=1)
    url = f"{client.base_url}/#/jobs/{callback.job_id}"
    assert caplog.text.count(f"job {callback.job_id}: view the run at {url}") == 1
    assert caplog.text.count(f"job {callback.job_id} done; view it at {url}") == 1
    assert key not in caplog.text  # a link, never the credentials


def test_without_a_key_the_run_says_where_the_spool_is(
    toy: Toy, run_trainer: RunTrainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.delenv("FINETUNE_LAB_API_KEY", raising=False)
    spool = tmp_path / "spool"
    callback = PredictionsCallback(
        toy.held_out, sample_count=1, max_new_tokens=2, spool_dir=spool, flush_timeout=1.0
    )
    run_trainer([callback], epochs=1)
    assert f"rounds are kept in {spool / callback.job_id}" in caplog.text
    assert f"`finetune-lab sync --spool-dir {spool}`" in caplog.text
    assert "view the run" not in caplog.text
    assert len(list((spool / callback.job_id / "batches").glob("*.json"))) == 2


def test_announcements_reach_stderr_when_logging_hides_info(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("finetune_lab.training")
    logger.setLevel(logging.WARNING)
    announce("hello")
    assert capsys.readouterr().err == "finetune-lab: hello\n"
    assert "hello" not in caplog.text
    logger.setLevel(logging.INFO)
    announce("again")
    assert capsys.readouterr().err == "" and "finetune-lab: again" in caplog.text
