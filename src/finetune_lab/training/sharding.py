"""What to call `generate` on, per training wrapper, and whether generation is a collective.

- DDP / DeepSpeed ZeRO-0..2: every rank holds the whole model; the wrapper's `.module`
  generates alone, no collective.
- FSDP2 (`fully_shard`, also `from_pretrained(distributed_config=...)` and accelerate's
  FSDP2): each sharded module all-gathers its own parameters in its forward pre-hook, so the
  model generates as is with `synced_gpus` (every rank runs the same forward passes). No
  whole-model gather: fully_shard has no such call, and memory stays what training uses.
- FSDP1 (`FullyShardedDataParallel`): `generate` runs on the wrapped module, which bypasses
  the root wrapper's forward, so the root's own parameters (embeddings, head) are summoned
  (`summon_full_params(recurse=False)`, as TRL does) and the nested units gather theirs in
  their forward, with `synced_gpus`. The full model is never materialised on one rank.
- DeepSpeed ZeRO-3: the engine's module with `synced_gpus` (its hooks fetch each layer's
  parameters in forward, as transformers' `Seq2SeqTrainer` does). TRL gathers the whole
  model instead (`GatheredParameters`), faster but the full model on every GPU: the 70B runs
  ZeRO-3 exists for cannot afford that, so generation stays sharded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

Sharding = Literal["fsdp1", "fsdp2", "zero3"]


def _unwrapped(model: Any) -> Any:
    """The module inside DDP or a DeepSpeed engine (both lack `generate`)."""
    try:
        from torch.nn.parallel import DistributedDataParallel
    except ImportError:  # pragma: no cover - torch is a training dependency
        return model
    if isinstance(model, DistributedDataParallel) or type(model).__name__ == "DeepSpeedEngine":
        return model.module
    return model


def sharding_of(model: Any) -> Sharding | None:
    """How the model's weights are split across ranks (None: each rank has them all)."""
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    model = _unwrapped(model)
    modules = list(model.modules()) if hasattr(model, "modules") else []
    if any(isinstance(module, FSDPModule) for module in modules):
        return "fsdp2"
    if any(isinstance(module, FullyShardedDataParallel) for module in modules):
        return "fsdp1"
    if hasattr(model, "parameters") and any(hasattr(p, "ds_id") for p in model.parameters()):
        return "zero3"  # ZeRO-3 marks every parameter it partitions with a `ds_id`
    return None


@contextmanager
def generation_target(model: Any) -> Iterator[tuple[Any, Sharding | None]]:
    """The module to call `generate` on and the model's sharding, for the duration."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    sharding = sharding_of(model)
    target = _unwrapped(model)
    if isinstance(target, FullyShardedDataParallel):
        with FullyShardedDataParallel.summon_full_params(target, recurse=False, writeback=False):
            yield target.module, sharding
    else:
        yield target, sharding
