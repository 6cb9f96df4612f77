"""A tiny model trained once per session, and a helper that runs a real `Trainer` on it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from finetune_lab.training.toy import CausalLMDataset, save_checkpoint, toy_setup  # noqa: E402

MODEL_SHAPE = {"n_layer": 2, "n_embd": 48, "n_head": 2, "n_positions": 64}


@dataclass
class Toy:
    """A briefly pre-trained checkpoint (so greedy answers are not all alike) and its data."""

    checkpoint: Path
    tokenizer: Any
    dataset: CausalLMDataset
    held_out: list[dict[str, str]]  # the samples rounds are recorded on
    train_records: list[dict[str, str]]  # what `dataset` holds

    def model(self) -> Any:
        return transformers.AutoModelForCausalLM.from_pretrained(self.checkpoint)


@pytest.fixture(scope="session")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Toy:
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model, tokenizer, dataset, held_out = toy_setup(train_size=256, **MODEL_SHAPE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for start in range(0, 256 * 2, 32):
            batch = dataset.collate([dataset[i % 256] for i in range(start, start + 32)])
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    train_records = held_out[32:]
    small = CausalLMDataset(train_records, tokenizer, max_length=MODEL_SHAPE["n_positions"])
    path = save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("toy") / "ckpt")
    return Toy(path, tokenizer, small, held_out[:32], train_records)


RunTrainer = Callable[..., Any]


@pytest.fixture
def run_trainer(toy: Toy, tmp_path: Path) -> RunTrainer:
    """Train `model` (default: a fresh copy of the toy checkpoint) with real `Trainer`."""

    def run(
        callbacks: list[Any],
        *,
        model: Any = None,
        epochs: int = 2,
        eval_steps: int | None = None,
        **extra: Any,
    ) -> Any:
        model = model if model is not None else toy.model()
        settings: dict[str, Any] = {
            "output_dir": str(tmp_path / "out"),
            "per_device_train_batch_size": 8,
            "num_train_epochs": epochs,
            "learning_rate": 1e-3,
            "report_to": [],
            "save_strategy": "no",
            "logging_strategy": "no",
            "disable_tqdm": True,
            "use_cpu": True,
            "seed": 0,
            "eval_strategy": "steps" if eval_steps else "no",
            "eval_steps": eval_steps,
        }
        args = transformers.TrainingArguments(**{**settings, **extra})
        trainer = transformers.Trainer(
            model=model,
            args=args,
            train_dataset=toy.dataset,
            eval_dataset=toy.dataset if eval_steps else None,
            data_collator=toy.dataset.collate,
            processing_class=toy.tokenizer,
            callbacks=callbacks,
        )
        trainer.train()
        return trainer

    logging.getLogger("finetune_lab.training").setLevel(logging.INFO)
    return run
