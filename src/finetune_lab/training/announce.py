"""Telling the person at the terminal where a run's results are (like W&B's "View run at").

The line goes through the `finetune_lab.training` logger when logging is set up to show INFO;
otherwise (the usual case: logging never configured, and Python would drop an INFO line) it is
printed to stderr, so it is seen either way, once.
"""

from __future__ import annotations

import logging
import os
import sys
from urllib.parse import quote

from finetune_lab.client._transport import API_KEY_ENV

logger = logging.getLogger("finetune_lab.training")


def dashboard_url(api_url: str, job_id: str) -> str:
    """The dashboard page of a job (the hash route the web app serves)."""
    return f"{api_url.rstrip('/')}/#/jobs/{quote(job_id, safe='')}"


def has_credentials(client: object | None) -> bool:
    """Whether the sender will have an API key to deliver with."""
    return client is not None or bool(os.environ.get(API_KEY_ENV))


def sync_hint(spool_dir: str) -> str:
    return f"`finetune-lab sync --spool-dir {spool_dir}`"


def announce(message: str) -> None:
    text = f"finetune-lab: {message}"
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(text)
    else:
        print(text, file=sys.stderr, flush=True)
