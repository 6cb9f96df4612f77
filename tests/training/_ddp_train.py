"""Run by `torchrun --nproc_per_node 2` from test_distributed.py: a gloo (CPU) DDP run with
the callback on every rank, its client built from the environment, told to stop after the first
epoch's round (a target every round meets; only rank 0 scores rounds)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from finetune_lab.training import PredictionsCallback
from finetune_lab.training.toy import CausalLMDataset


def main() -> None:
    checkpoint, output, samples_path = sys.argv[1:4]
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    records = json.loads(Path(samples_path).read_text())
    dataset = CausalLMDataset(records, tokenizer, max_length=64)
    callback = PredictionsCallback(
        records, sample_count=4, max_new_tokens=8, spool_dir=Path(output) / "spool",
        metrics={"one": lambda prediction, truth, sample: 1.0}, stop_when={"one": 1.0},
    )  # fmt: skip
    args = TrainingArguments(
        output_dir=output,
        per_device_train_batch_size=4,
        num_train_epochs=2,
        use_cpu=True,
        ddp_backend="gloo",
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=dataset.collate,
        processing_class=tokenizer,
        callbacks=[callback],
    )
    trainer.train()
    Path(output, f"job_id.{os.environ['RANK']}").write_text(callback.job_id)
    Path(output, f"steps.{os.environ['RANK']}").write_text(str(trainer.state.global_step))
    # Leave together (see _ddp_grpo.py): a rank exiting with the group alive can abort.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
