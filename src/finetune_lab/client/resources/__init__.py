"""One module per API resource; each holds its request specs plus a sync and an async class."""

from finetune_lab.client.resources.jobs import AsyncJobs, Jobs
from finetune_lab.client.resources.training_predictions import (
    AsyncTrainingPredictions,
    TrainingPredictions,
)

__all__ = ["AsyncJobs", "AsyncTrainingPredictions", "Jobs", "TrainingPredictions"]
