"""FineTune Lab: see what your model says on fixed prompts while it fine-tunes, scored.

Importing the package gives the SDK and its errors only; the server (FastAPI, SQLAlchemy,
rapidfuzz) lives in `finetune_lab.server` and is imported only by whoever runs it.
"""

from finetune_lab._version import __version__
from finetune_lab.client import AsyncFinetuneLabClient, FinetuneLabClient
from finetune_lab.client._import_file import ImportFileError
from finetune_lab.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FinetuneLabError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ValidationError,
)

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncFinetuneLabClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "FinetuneLabClient",
    "FinetuneLabError",
    "ImportFileError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ValidationError",
    "__version__",
]
