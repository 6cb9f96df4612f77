"""`SpooledJob`: one job's client, spool and background sender, for whatever records its rows.

`PredictionsRecorder` (rounds it generates) and `RolloutsCallback` (an RL trainer's rollouts)
both deliver through it, so a job is set up, spooled and sent the same way whoever fills it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx

from finetune_lab._ids import time_ordered_hex
from finetune_lab.client import FinetuneLabClient
from finetune_lab.client._transport import resolve_base_url
from finetune_lab.errors import FinetuneLabError
from finetune_lab.paths import default_spool_dir
from finetune_lab.training.sender import BackgroundSender
from finetune_lab.training.spool import JobSpool

logger = logging.getLogger("finetune_lab.training")

# The sender does its own backoff; a quick connect timeout keeps an unreachable server cheap.
SENDER_TIMEOUT = httpx.Timeout(30.0, connect=3.0)


class SpooledJob:
    """The delivery half of a recorder: rows are spooled on disk, then sent in the background.

    Without `job_id` a new id is made up front, so the job exists in the spool before the
    server has been reached. Without `client` one is built from the environment when the sender
    first needs it; a failure to build it (`_client_errors`) leaves the rows in the spool.
    """

    # Errors building the default client that mean "no server to send to" (rows stay spooled).
    _client_errors: tuple[type[Exception], ...] = (FinetuneLabError,)
    # What the warnings call the rows.
    _rows_word = "Rows"

    def __init__(
        self,
        *,
        client: FinetuneLabClient | None,
        job_id: str | None,
        job_name: str | None,
        model_name: str | None,
        spool_dir: str | os.PathLike[str] | None,
    ) -> None:
        self.job_id = job_id or f"job_{time_ordered_hex()}"
        self.job_name = job_name
        self.model_name = model_name
        self.spool_dir = os.fspath(spool_dir) if spool_dir is not None else str(default_spool_dir())
        self.spool = JobSpool(self.spool_dir, self.job_id)
        self._client = client
        self._sender: BackgroundSender | None = None

    def _api_url(self) -> str:
        """The server the rows go to: the given client's, else the environment's."""
        if self._client is not None:
            return self._client.base_url
        return resolve_base_url()

    def _make_client(self) -> FinetuneLabClient | None:
        """The sender's client factory (called on each delivery attempt until one is made)."""
        if self._client is not None:
            return self._client
        try:
            return FinetuneLabClient(timeout=SENDER_TIMEOUT, max_retries=0)
        except self._client_errors as exc:
            self._client_unavailable(exc)
            return None

    def _client_unavailable(self, exc: Exception) -> None:
        """Say why nothing can be sent (no API key, bad URL): rows wait for `finetune-lab sync`."""
        logger.warning(
            "finetune-lab: %s %s are kept in %s for `finetune-lab sync`.",
            exc,
            self._rows_word,
            self.spool.directory,
        )

    def _start_sender(self, job: dict[str, Any]) -> BackgroundSender:
        """The background sender, started on first use with how to create the job."""
        if self._sender is None:
            try:
                self.spool.update_meta(api_url=self._api_url(), finished=False, job=job)
            except OSError as exc:  # full disk: rows wait in the sender's memory instead
                logger.warning("finetune-lab: cannot write the spool's job file (%s)", exc)
            self._sender = BackgroundSender(
                self.spool, self._make_client, close_client=self._client is None, job=job
            )
        return self._sender
