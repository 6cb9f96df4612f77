"""Run by `torchrun --nproc_per_node 2` (gloo, CPU) from test_ranks.py.

`recorder`: a `PredictionsRecorder` on every rank records two rounds of a model held by DDP,
then FSDP2 (`fully_shard` on a CPU mesh), then FSDP1, one job each, after a round that fails
on rank 1 only and one recorded by rank 0 alone (`all_ranks=False`). `trainer-<wrapper>`: a real
`Trainer` with `PredictionsCallback`, the model replicated (DDP) or sharded at load time with
FSDP2 (`from_pretrained(distributed_config=...)`, which Trainer leaves unwrapped; on CPU
`TrainingArguments(fsdp=...)` would fall back to DDP). Ranks other than 0 are pointed at a
tripwire address: any connection they opened would be seen there. Each rank writes what it
saw to `<out>/<wrapper>/rank.<rank>.json`; the final weights go to `<out>/<wrapper>/final`
(trainer modes).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from finetune_lab.training import PredictionsCallback, PredictionsRecorder
from finetune_lab.training.sharding import sharding_of
from finetune_lab.training.toy import CausalLMDataset

SETTINGS: dict[str, Any] = {"sample_count": 5, "batch_size": 2, "max_new_tokens": 8}
RECORDER_WRAPPERS = ("ddp", "fsdp2", "fsdp1")


def _wrap(model: Any, wrapper: str) -> Any:
    if wrapper == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    block = type(model.transformer.h[0])
    if wrapper == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for layer in model.transformer.h:
            fully_shard(layer, mesh=mesh)
        return fully_shard(model, mesh=mesh)
    if wrapper == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        return FullyShardedDataParallel(
            model, auto_wrap_policy=ModuleWrapPolicy({block}), device_id=torch.device("cpu")
        )
    raise ValueError(wrapper)


def _local_share(model: Any) -> float:
    """The fraction of the weights this rank holds (1.0: all of them)."""
    local = total = 0
    for parameter in model.parameters():
        if hasattr(parameter, "to_local"):  # FSDP2: a DTensor shard
            local, total = local + parameter.to_local().numel(), total + parameter.numel()
        elif hasattr(parameter, "_unpadded_unsharded_size"):  # FSDP1: a flat parameter shard
            local += parameter.numel()
            total += parameter._unpadded_unsharded_size.numel()
        else:
            local, total = local + parameter.numel(), total + parameter.numel()
    return local / total


def recorder_run(wrapper: str, checkpoint: str, out: Path, records: list[Any]) -> dict[str, Any]:
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = _wrap(AutoModelForCausalLM.from_pretrained(checkpoint), wrapper)
    model.train()  # a round must put it back that way
    rank = dist.get_rank()
    recorder = PredictionsRecorder(
        records, spool_dir=out / f"spool.{rank}", job_name=wrapper, **SETTINGS
    )
    rounds = []
    for step in (0, 1):
        queued = recorder.round(model, tokenizer, step=step, epoch=step)
        rounds.append({"queued": queued, "generated": recorder.last_generated})
    delivered = recorder.close(30)
    seen = {
        "job_id": recorder.job_id,
        "rounds": rounds,
        "delivered": delivered,
        "sharding": sharding_of(model),
        "share": _local_share(model),
        "training": model.training,
    }
    return seen


def failure_run(wrapper: str, checkpoint: str, out: Path, records: list[Any]) -> dict[str, Any]:
    """A round whose last sample (rank 1's batch) is longer than the model's 64 positions."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = _wrap(AutoModelForCausalLM.from_pretrained(checkpoint), "ddp")
    too_long = {"prompt": "word " * 80, "completion": "x"}
    recorder = PredictionsRecorder(
        [*records[:4], too_long], spool_dir=out / f"spool.{dist.get_rank()}", **SETTINGS
    )
    try:
        recorder.round(model, tokenizer, step=0, epoch=0)
    except RuntimeError as exc:
        return {"error": str(exc)}
    return {"error": None}


def main_only_run(wrapper: str, checkpoint: str, out: Path, records: list[Any]) -> dict[str, Any]:
    """`all_ranks=False`: rank 0 alone calls `round()`; refused for a sharded model."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    replicated = _wrap(AutoModelForCausalLM.from_pretrained(checkpoint), "ddp")
    sharded = _wrap(AutoModelForCausalLM.from_pretrained(checkpoint), "fsdp2")
    rank = dist.get_rank()
    recorder = PredictionsRecorder(
        records, spool_dir=out / f"spool.{rank}", job_name="main-only", all_ranks=False, **SETTINGS
    )
    seen: dict[str, Any] = {"queued": None, "refused": None}
    if rank == 0:
        seen["queued"] = recorder.round(replicated, tokenizer, step=0, epoch=0)
        seen["generated"] = recorder.last_generated
        try:
            recorder.round(sharded, tokenizer, step=1, epoch=0)
        except RuntimeError as exc:
            seen["refused"] = str(exc)
        recorder.close(30)
    dist.barrier()
    return seen


class _Shares(TrainerCallback):
    """Each round's share of this rank (runs after PredictionsCallback at the same events)."""

    def __init__(self, capture: PredictionsCallback) -> None:
        self.capture = capture
        self.generated: list[int] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.generated.append(self.capture.recorder.last_generated)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.generated.append(self.capture.recorder.last_generated)


def trainer_run(wrapper: str, checkpoint: str, out: Path, records: list[Any]) -> dict[str, Any]:
    model: Any
    from transformers import Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    if wrapper == "fsdp2":
        from transformers.distributed import DistributedConfig

        config = DistributedConfig(fsdp_size=2, fsdp_plan={"transformer.h.*": "free_full_weight"})
        model = AutoModelForCausalLM.from_pretrained(checkpoint, distributed_config=config)
    else:
        model = AutoModelForCausalLM.from_pretrained(checkpoint)
    capture = PredictionsCallback(
        records, spool_dir=out / f"spool.{os.environ['RANK']}", **SETTINGS
    )
    shares = _Shares(capture)
    dataset = CausalLMDataset(records, tokenizer, max_length=64)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=4,
        num_train_epochs=2,
        learning_rate=1e-3,
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
        callbacks=[capture, shares],
    )
    trainer.train()
    model = trainer.model  # the model the callback saw
    seen = {
        "job_id": capture.job_id,
        "generated": shares.generated,
        "sharding": sharding_of(model),
        "share": _local_share(model),
        "steps": trainer.state.global_step,
    }
    if wrapper == "fsdp2":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    else:
        state = trainer.accelerator.unwrap_model(model).state_dict()
    if dist.get_rank() == 0:
        final = AutoModelForCausalLM.from_pretrained(checkpoint)
        final.load_state_dict(state)
        final.save_pretrained(out / "final")
    dist.barrier()
    return seen


def main() -> None:
    mode, checkpoint, output, samples_path, tripwire_url = sys.argv[1:6]
    if os.environ["RANK"] != "0":
        os.environ["FINETUNE_LAB_API_URL"] = tripwire_url
    records = json.loads(Path(samples_path).read_text())
    if mode == "recorder":  # the three wrappers in turn, one job each, one launch
        dist.init_process_group("gloo")
        # A failed round first: the ranks must still be in step for the runs after it.
        runs = [(failure_run, "failure"), (main_only_run, "main-only")]
        runs += [(recorder_run, wrapper) for wrapper in RECORDER_WRAPPERS]
    else:
        runs = [(trainer_run, mode.removeprefix("trainer-"))]
    for run, wrapper in runs:
        out = Path(output, wrapper)
        out.mkdir(exist_ok=True)
        seen = run(wrapper, checkpoint, out, records)
        Path(out, f"rank.{os.environ['RANK']}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
