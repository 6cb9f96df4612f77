"""Run by `torchrun --nproc_per_node 2` from test_rollouts.py: a gloo (CPU) GRPO run with
`RolloutsCallback` on every rank, its client built from the environment; rank 0 writes the
trainer's log history for the test to compare the stored rewards with."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import datasets
import torch
import trl
from transformers import AutoModelForCausalLM, AutoTokenizer

from finetune_lab.training import RolloutsCallback


def brace(completions: list[str], **kwargs: Any) -> list[float]:
    return [1.0 if "{" in c else 0.0 for c in completions]


def closeness(completions: list[str], answer: list[str], **kwargs: Any) -> list[float]:
    return [-abs(len(c) - len(a)) / 10 for c, a in zip(completions, answer, strict=True)]


def main() -> None:
    checkpoint, output, records_path = sys.argv[1:4]
    records = json.loads(Path(records_path).read_text())
    callback = RolloutsCallback(spool_dir=Path(output) / "spool")
    args = trl.GRPOConfig(
        output_dir=output,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-4,
        beta=0.0,
        use_cpu=True,
        ddp_backend="gloo",
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = trl.GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(checkpoint),
        reward_funcs=callback.wrap([brace, closeness]),
        args=args,
        train_dataset=datasets.Dataset.from_list(records),
        processing_class=AutoTokenizer.from_pretrained(checkpoint),
        callbacks=[callback],
    )
    trainer.train()
    rank = os.environ["RANK"]
    Path(output, f"job_id.{rank}").write_text(callback.job_id)
    Path(output, f"recorded.{rank}").write_text(str(callback.recorded))
    if rank == "0":
        Path(output, "log_history.json").write_text(json.dumps(trainer.state.log_history))
    # Leave together: a rank that exits with the process group alive can abort in gloo's
    # teardown ("terminate called without an active exception") while the other still works.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
