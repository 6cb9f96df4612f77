"""`PredictionsCallback` in a real `Trainer` against a live server (docs/OVERVIEW.md)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from _support.appserver import ServerHandle
from finetune_lab.client import FinetuneLabClient
from finetune_lab.training import PredictionsCallback
from finetune_lab.training.toy import CHAT_TEMPLATE, RECORD_SCHEMA, chat_records

from .conftest import RunTrainer, Toy

STEPS_PER_EPOCH = 4  # 32 training records, batch size 8


@pytest.fixture
def client(sqlite_server: ServerHandle) -> FinetuneLabClient:
    key = sqlite_server.create_key("trainer")
    return FinetuneLabClient(api_key=key, base_url=sqlite_server.base_url)


def all_rows(client: FinetuneLabClient, job_id: str) -> list[Any]:
    return list(client.training_predictions.iter(job_id))


def rounds_of(rows: list[Any]) -> dict[tuple[int, int], int]:
    return dict(Counter((r.epoch, r.step) for r in rows))


def test_epoch_rounds_with_baseline_and_metadata(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path
) -> None:
    callback = PredictionsCallback(
        toy.held_out,
        client=client,
        job_name="epochs",
        sample_count=6,
        max_new_tokens=20,
        batch_size=4,
        validators={"json_schema": RECORD_SCHEMA},
        spool_dir=tmp_path / "spool",
    )
    trainer = run_trainer([callback], epochs=2)
    rows = all_rows(client, callback.job_id)
    assert rounds_of(rows) == {(0, 0): 6, (1, STEPS_PER_EPOCH): 6, (2, 2 * STEPS_PER_EPOCH): 6}
    job = client.jobs.get(callback.job_id)
    assert job.status == "completed" and job.name == "epochs"
    settings = job.config["predictions"]
    assert settings["frequency"] == "epoch" and settings["validators"]["json_schema"]
    first = rows[0]
    assert first.prompt_id == hashlib.sha256(first.prompt.encode()).hexdigest()
    assert first.prompt in {r["prompt"] for r in toy.held_out}
    assert first.ground_truth == toy.held_out[first.source_index]["completion"]
    assert first.sample_source == "list" and first.max_new_tokens == 20
    assert first.do_sample is False
    assert first.total_tokens == first.prompt_tokens + first.completion_tokens
    assert first.latency_ms is not None and first.latency_ms > 0
    assert first.validation_kind == "json_parse+json_schema"
    assert all(r.char_error_rate is not None for r in rows)
    # Every round saw the same prompts in the same slots.
    by_index = {(r.sample_index, r.prompt_id) for r in rows}
    assert len(by_index) == 6
    assert trainer.model.training  # generation handed the model back in train mode
    assert not any((tmp_path / "spool").iterdir())  # everything delivered: the spool is empty


def test_step_rounds_label_the_epoch_in_progress(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path
) -> None:
    callback = PredictionsCallback(
        toy.held_out,
        client=client,
        sample_count=3,
        frequency="steps",
        step_interval=3,
        max_new_tokens=8,
        baseline=False,
        spool_dir=tmp_path / "spool",
    )
    run_trainer([callback], epochs=2)
    # Steps 3 (epoch 1 running), 6 (epoch 2 running); no baseline.
    assert rounds_of(all_rows(client, callback.job_id)) == {(1, 3): 3, (2, 6): 3}


def test_eval_rounds(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path
) -> None:
    callback = PredictionsCallback(
        toy.held_out,
        client=client,
        sample_count=2,
        frequency="eval",
        max_new_tokens=8,
        spool_dir=tmp_path / "spool",
    )
    run_trainer([callback], epochs=1, eval_steps=2)
    assert rounds_of(all_rows(client, callback.job_id)) == {(0, 0): 2, (1, 2): 2, (1, 4): 2}


def test_chat_samples_use_the_chat_template(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path
) -> None:
    assert toy.tokenizer.chat_template == CHAT_TEMPLATE
    samples = chat_records(toy.held_out[:4])
    callback = PredictionsCallback(
        samples, client=client, sample_count=4, max_new_tokens=8, spool_dir=tmp_path / "spool"
    )
    run_trainer([callback], epochs=1)
    rows = all_rows(client, callback.job_id)
    assert len(rows) == 8
    for row in rows:
        source = samples[row.source_index]["messages"]
        expected_prompt = toy.tokenizer.apply_chat_template(
            source[:-1], tokenize=False, add_generation_prompt=True
        )
        assert row.prompt == expected_prompt and row.prompt.endswith("<|assistant|>")
        assert row.ground_truth == source[-1]["content"]
        assert row.prompt_id == hashlib.sha256(expected_prompt.encode()).hexdigest()


def test_callback_does_not_change_training(
    toy: Toy, run_trainer: RunTrainer, client: FinetuneLabClient, tmp_path: Path
) -> None:
    """Dropout draws from torch's RNG every step: any RNG use by the callback would show."""
    plain = run_trainer([], epochs=2)
    callback = PredictionsCallback(
        toy.held_out,
        client=client,
        sample_count=4,
        frequency="steps",
        step_interval=2,
        max_new_tokens=8,
        spool_dir=tmp_path / "spool",
    )
    watched = run_trainer([callback], epochs=2)
    assert plain.model.config.resid_pdrop > 0
    plain_loss = plain.state.log_history[-1]["train_loss"]
    assert watched.state.log_history[-1]["train_loss"] == plain_loss
    for (name, a), (_, b) in zip(
        plain.model.named_parameters(), watched.model.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name


def test_errors_are_logged_not_raised(
    toy: Toy,
    run_trainer: RunTrainer,
    client: FinetuneLabClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(toy.checkpoint)
    tokenizer.chat_template = None
    callback = PredictionsCallback(
        chat_records(toy.held_out[:2]),
        client=client,
        sample_count=2,
        spool_dir=tmp_path / "spool",
        tokenizer=tokenizer,
    )
    trainer = run_trainer([callback], epochs=1)
    assert trainer.state.global_step == STEPS_PER_EPOCH  # training went on
    assert "chat template" in caplog.text


def test_invalid_settings_fail_at_construction(toy: Toy) -> None:
    with pytest.raises(ValueError, match="frequency"):
        PredictionsCallback(toy.held_out, frequency="hourly")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_interval"):
        PredictionsCallback(toy.held_out, frequency="steps")
    with pytest.raises(ValueError, match="validators"):
        PredictionsCallback(toy.held_out, validators={"regex": "x"})


def test_plain_loop_recorder(toy: Toy, client: FinetuneLabClient, tmp_path: Path) -> None:
    """A custom loop: rounds when the user says, same rows and guarantees as the callback."""
    from finetune_lab.training import PredictionsRecorder

    model = toy.model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with PredictionsRecorder(
        toy.held_out,
        client=client,
        job_id=f"t-loop-{tmp_path.name}",
        sample_count=3,
        max_new_tokens=8,
        spool_dir=tmp_path / "spool",
    ) as recorder:
        assert recorder.round(model, toy.tokenizer, 0, 0) == 3
        model.train()
        for step in range(1, 5):
            batch = toy.dataset.collate([toy.dataset[i] for i in range(step * 4, step * 4 + 4)])
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step % 2 == 0:
                recorder.round(model, toy.tokenizer, step=step, epoch=1)
                assert model.training
    assert recorder.flush() is True
    rows = all_rows(client, recorder.job_id)
    assert rounds_of(rows) == {(0, 0): 3, (1, 2): 3, (1, 4): 3}
    assert client.jobs.get(recorder.job_id).status == "completed"
