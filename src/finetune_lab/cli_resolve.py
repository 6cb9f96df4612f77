"""Naming a job on the command line: its id, or its name when exactly one job has that name."""

from __future__ import annotations

from collections.abc import Iterator

from finetune_lab.client import FinetuneLabClient
from finetune_lab.errors import NotFoundError
from finetune_lab.schema import MAX_PAGE_LIMIT, Job, is_valid_job_id

MAX_CANDIDATES_SHOWN = 10


class JobLookupError(Exception):
    """No job, or several, answer to what the user typed (the CLI exits with code 2)."""


def iter_jobs(client: FinetuneLabClient) -> Iterator[Job]:
    """Every job of the caller, newest first, a page of 1,000 at a time."""
    offset = 0
    while True:
        page = client.jobs.list(limit=MAX_PAGE_LIMIT, offset=offset)
        yield from page.jobs
        offset += len(page.jobs)
        if not page.jobs or offset >= page.total:
            return


def resolve_job(client: FinetuneLabClient, ref: str) -> Job:
    """The job whose id is `ref`, else the one job named `ref`; JobLookupError otherwise.

    An id always wins over a name, so a job cannot be shadowed by another one's name."""
    if is_valid_job_id(ref):
        try:
            return client.jobs.get(ref)
        except NotFoundError:
            pass
    named = [job for job in iter_jobs(client) if job.name == ref]
    if not named:
        raise JobLookupError(f"no job with id or name {ref!r} (see `finetune-lab jobs list`)")
    if len(named) > 1:
        shown = "; ".join(
            f"{job.id} ({job.status}, created {job.created_at:%Y-%m-%d %H:%M:%S})"
            for job in named[:MAX_CANDIDATES_SHOWN]
        )
        more = len(named) - MAX_CANDIDATES_SHOWN
        tail = f"; and {more} more" if more > 0 else ""
        raise JobLookupError(
            f"{len(named)} jobs are named {ref!r}; pass one of their ids: {shown}{tail}"
        )
    return named[0]
