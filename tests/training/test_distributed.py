"""Two processes (`torchrun`, gloo on CPU) record each round once and stop together; TRL + LoRA
works too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from _support.appserver import ServerHandle
from _support.net import free_port
from finetune_lab.client import FinetuneLabClient
from finetune_lab.training import PredictionsCallback

from .conftest import Toy


def test_torchrun_two_processes_write_each_row_once(
    toy: Toy, sqlite_server: ServerHandle, tmp_path: Path
) -> None:
    key = sqlite_server.create_key("ddp-user")
    samples = tmp_path / "samples.json"
    samples.write_text(json.dumps(toy.held_out))
    env = {
        **os.environ,
        "FINETUNE_LAB_API_KEY": key,
        "FINETUNE_LAB_API_URL": sqlite_server.base_url,
        "OMP_NUM_THREADS": "1",
    }
    # fmt: off
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(Path(__file__).with_name("_ddp_train.py")),
        str(toy.checkpoint), str(tmp_path), str(samples),
    ]
    # fmt: on
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job_id = (tmp_path / "job_id.0").read_text()
    # Rank 0's stop decision reached rank 1: both ended after epoch 1 (a rank that stopped
    # alone would leave the other waiting in its next all-reduce until the timeout).
    assert [(tmp_path / f"steps.{rank}").read_text() for rank in (0, 1)] == ["4", "4"]
    output = done.stdout + done.stderr
    assert output.count(f"job {job_id}: view the run at ") == 1  # rank 0 only
    assert output.count("stopping training at step 4") == 1
    with FinetuneLabClient(api_key=key, base_url=sqlite_server.base_url) as client:
        rows = list(client.training_predictions.iter(job_id))
        # 32 records / (2 ranks x 4 per device) = 4 steps per epoch: rounds at 0 and 4, then
        # the stop target (met by every round after the baseline) ends training.
        assert Counter(r.step for r in rows) == {0: 4, 4: 4}
        assert client.jobs.list().total == 1  # rank 1 created no job of its own
    assert not list((tmp_path / "spool").glob("*/batches/*.json"))


def test_trl_sft_trainer_with_a_lora_adapter(
    toy: Toy, sqlite_server: ServerHandle, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    peft = pytest.importorskip("peft")
    trl = pytest.importorskip("trl")
    key = sqlite_server.create_key("trl-user")
    client = FinetuneLabClient(api_key=key, base_url=sqlite_server.base_url)
    callback = PredictionsCallback(
        toy.held_out,
        client=client,
        sample_count=3,
        max_new_tokens=8,
        spool_dir=tmp_path / "spool",
    )
    trainer = trl.SFTTrainer(
        model=toy.model(),
        args=trl.SFTConfig(
            output_dir=str(tmp_path / "out"),
            per_device_train_batch_size=8,
            num_train_epochs=2,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            use_cpu=True,
            max_length=64,
            disable_tqdm=True,
        ),
        train_dataset=datasets.Dataset.from_list(toy.train_records),
        processing_class=toy.tokenizer,
        peft_config=peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["c_attn"], task_type="CAUSAL_LM"
        ),
        callbacks=[callback],
    )
    trainer.train()
    assert isinstance(trainer.model, peft.PeftModel) and trainer.model.training
    rows = list(client.training_predictions.iter(callback.job_id))
    assert Counter(r.epoch for r in rows) == {0: 3, 1: 3, 2: 3}
    assert all(r.completion_tokens and r.prompt_tokens for r in rows)
    assert client.jobs.get(callback.job_id).status == "completed"
