"""Model backends: how a registered model turns chat messages into a completion."""

from finetune_lab.server.services.backends.base import (
    Backend,
    BackendError,
    Completion,
    GenerationParams,
    StreamEvent,
)

__all__ = ["Backend", "BackendError", "Completion", "GenerationParams", "StreamEvent"]
