"""Reaching the Trainer's loggers and the other ranks from inside a callback.

A `TrainerCallback` is handed no Trainer, and `Trainer.log` cannot be borrowed anyway: TRL
trainers fold (and reset) their own pending training metrics into whatever `log` is called
with. So this does what `Trainer.log` does at its core, itself: append the entry to
`state.log_history` and call every callback's `on_log` through the Trainer's `CallbackHandler`
(that is where `report_to` integrations such as TensorBoard or W&B listen). The handler is the
object whose event loop called us: found once on the call stack and kept.
"""

from __future__ import annotations

import logging
import sys
from types import FrameType

from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import CallbackHandler

logger = logging.getLogger("finetune_lab.training")

_MAX_FRAMES = 12


def find_handler(callback: object) -> CallbackHandler | None:
    """The `CallbackHandler` up the call stack that holds `callback`, if any."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, CallbackHandler) and any(cb is callback for cb in owner.callbacks):
            return owner
        frame = frame.f_back
    return None


def log_through_trainer(
    handler: CallbackHandler | None,
    args: TrainingArguments,
    state: TrainerState,
    control: TrainerControl,
    logs: dict[str, float],
) -> None:
    """One log entry, as `Trainer.log` makes it, seen by `state.log_history` and every logger.

    `on_log` clears `control.should_log`; it is put back, or a round recorded in `on_step_end`
    would cancel the Trainer's own loss logging at that step."""
    entry = dict(logs)
    if state.epoch is not None:
        entry["epoch"] = state.epoch
    state.log_history.append({**entry, "step": state.global_step})
    if handler is None:
        return
    should_log = control.should_log
    try:
        handler.on_log(args, state, control, entry)
    finally:
        control.should_log = should_log


def agree_on_stop(stop: bool) -> bool:
    """Rank 0's decision, on every rank (only rank 0 scores rounds); a single process: as is.

    Every rank reaches this at the same Trainer event, so the broadcast pairs up. A rank that
    stopped alone would leave the others waiting in their next collective forever."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a training dependency
        return stop
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return stop
    decision = [stop]
    dist.broadcast_object_list(decision, src=0)
    return bool(decision[0])
