"""One module per API resource; each holds its request specs plus a sync and an async class."""

from finetune_lab.client.resources.analytics import Analytics, AsyncAnalytics
from finetune_lab.client.resources.batch_test import AsyncBatchTest, BatchTest
from finetune_lab.client.resources.jobs import AsyncJobs, Jobs
from finetune_lab.client.resources.models import AsyncModels, Models
from finetune_lab.client.resources.suites import AsyncTestSuites, TestSuites
from finetune_lab.client.resources.training_predictions import (
    AsyncTrainingPredictions,
    TrainingPredictions,
)

__all__ = [
    "Analytics",
    "AsyncAnalytics",
    "AsyncBatchTest",
    "AsyncJobs",
    "AsyncModels",
    "AsyncTestSuites",
    "AsyncTrainingPredictions",
    "BatchTest",
    "Jobs",
    "Models",
    "TestSuites",
    "TrainingPredictions",
]
