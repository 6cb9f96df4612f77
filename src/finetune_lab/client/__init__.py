"""The Python SDK: `FinetuneLabClient` and `AsyncFinetuneLabClient`."""

from finetune_lab.client._client import AsyncFinetuneLabClient, FinetuneLabClient

__all__ = ["AsyncFinetuneLabClient", "FinetuneLabClient"]
