"""Training capture: record what the model answers on fixed prompts while it trains.

`PredictionsCallback` plugs into `transformers.Trainer` (and TRL trainers);
`PredictionsRecorder` serves custom loops. Both need the `training` extra (torch,
transformers); the spool and upload parts (`finetune-lab sync`) do not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from finetune_lab.training.callback import PredictionsCallback
    from finetune_lab.training.recorder import PredictionsRecorder

__all__ = ["PredictionsCallback", "PredictionsRecorder"]


def __getattr__(name: str) -> Any:
    # Lazy: importing transformers costs seconds, and `finetune-lab sync` never needs it.
    if name == "PredictionsCallback":
        from finetune_lab.training.callback import PredictionsCallback

        return PredictionsCallback
    if name == "PredictionsRecorder":
        from finetune_lab.training.recorder import PredictionsRecorder

        return PredictionsRecorder
    raise AttributeError(name)
