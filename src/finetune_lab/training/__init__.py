"""Training capture: record what the model answers on fixed prompts while it trains.

`PredictionsCallback` plugs into `transformers.Trainer` (and TRL trainers);
`PredictionsRecorder` serves custom loops; `RolloutsCallback` records an RL trainer's own
rollouts and rewards (TRL GRPO/RLOO). They need the `training` extra (torch,
transformers); the spool and `sync` parts do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finetune_lab.training.callback import PredictionsCallback
    from finetune_lab.training.recorder import PredictionsRecorder
    from finetune_lab.training.rollouts import RolloutsCallback

__all__ = ["PredictionsCallback", "PredictionsRecorder", "RolloutsCallback"]


def __getattr__(name: str) -> Any:
    # Lazy: importing transformers costs seconds, and `finetune-lab sync` never needs it.
    if name == "PredictionsCallback":
        from finetune_lab.training.callback import PredictionsCallback

        return PredictionsCallback
    if name == "PredictionsRecorder":
        from finetune_lab.training.recorder import PredictionsRecorder

        return PredictionsRecorder
    if name == "RolloutsCallback":
        from finetune_lab.training.rollouts import RolloutsCallback

        return RolloutsCallback
    raise AttributeError(name)
