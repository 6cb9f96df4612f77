"""Quality scores and validators: pure functions, the single definition every client shares."""

from finetune_lab.scoring.metrics import Scores, score, score_batch
from finetune_lab.scoring.validators import ValidationResult, Validators, validate

__all__ = ["Scores", "ValidationResult", "Validators", "score", "score_batch", "validate"]
