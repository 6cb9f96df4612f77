"""Upload whatever training runs left in a spool directory (the `finetune-lab sync` command)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from finetune_lab.client import FinetuneLabClient
from finetune_lab.client._transport import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from finetune_lab.errors import FinetuneLabError
from finetune_lab.training.delivery import Outcome, UploadReport, mark_finished, upload
from finetune_lab.training.spool import JobSpool, spooled_jobs


@dataclass
class JobUpload:
    job_id: str
    api_url: str
    report: UploadReport
    remaining: int


def _credentials(
    spool: JobSpool, api_url: str | None, api_key: str | None
) -> tuple[str, str | None, bool]:
    """(url, credential, is_api_key): flags first, then the environment, then the spool."""
    meta = spool.read_meta()
    url = api_url or os.environ.get(BASE_URL_ENV) or meta.get("api_url") or DEFAULT_BASE_URL
    key = api_key or os.environ.get(API_KEY_ENV)
    if key:
        return url, key, True
    token = meta.get("job_token")  # can only add predictions to its own, existing job
    return url, token if isinstance(token, str) else None, False


def upload_job(spool: JobSpool, *, api_url: str | None, api_key: str | None) -> JobUpload:
    url, credential, is_api_key = _credentials(spool, api_url, api_key)
    if credential is None:
        report = UploadReport(
            Outcome.BLOCKED, error=f"no API key: pass --api-key or set {API_KEY_ENV}"
        )
        return JobUpload(spool.job_id, url, report, len(spool.pending()))
    with FinetuneLabClient(api_key=credential, base_url=url) as client:
        report = upload(client, spool, create_job=is_api_key)
        if report.outcome is Outcome.DONE:
            try:
                if is_api_key:
                    mark_finished(client, spool)
                elif spool.read_meta().get("finished"):
                    spool.remove_if_done()
            except FinetuneLabError as exc:
                report.error = f"delivered, but could not mark the job completed: {exc}"
    return JobUpload(spool.job_id, url, report, len(spool.pending()))


def upload_spool(
    spool_dir: str | os.PathLike[str],
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    on_job: Callable[[JobSpool], None] | None = None,
) -> list[JobUpload]:
    """Upload every spooled job under `spool_dir`; safe to re-run (ingest is an upsert)."""
    results = []
    for spool in spooled_jobs(spool_dir):
        if on_job is not None:
            on_job(spool)
        results.append(upload_job(spool, api_url=api_url, api_key=api_key))
    return results
