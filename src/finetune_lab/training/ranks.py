"""Which process this is in a distributed run, its share of a round, and the gather to rank 0.

Every rank generates a contiguous run of the same batches a single process would make
(`batch_size` prompts each, in sample order), so the padding, and therefore every greedy text,
is the one a single process produces. The answers travel with `all_gather_object` over the
default process group (gloo on CPU, NCCL on GPU): one collective per round, after generation,
so no rank is ever waiting on another one's network or disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current_world() -> World:
    """The initialised default process group; else one process (RANK, for a launcher's env)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return World(int(dist.get_rank()), int(dist.get_world_size()))
    except ImportError:  # pragma: no cover - torch is a training dependency
        pass
    rank = os.environ.get("RANK", "0")
    return World(int(rank) if rank.isdigit() else 0, 1)


def batch_share(count: int, batch_size: int, world: World) -> tuple[list[range], int]:
    """This rank's batches (ranges of sample positions) and the most batches any rank has.

    The single-process batches are dealt out contiguously and as evenly as possible: the first
    `batches % size` ranks get one more.
    """
    starts = range(0, count, batch_size)
    per_rank, extra = divmod(len(starts), world.size)
    first = world.rank * per_rank + min(world.rank, extra)
    mine = starts[first : first + per_rank + (1 if world.rank < extra else 0)]
    most = per_rank + (1 if extra else 0)
    return [range(start, min(start + batch_size, count)) for start in mine], most


def gather(payload: Any, world: World) -> list[Any]:
    """Every rank's payload, in rank order, on every rank (a single process: its own)."""
    if world.size == 1:
        return [payload]
    import torch.distributed as dist

    parts: list[Any] = [None] * world.size
    dist.all_gather_object(parts, payload)
    return parts
