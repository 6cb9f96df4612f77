"""Naming a job on the command line (its id, or its name when exactly one job has that name)
and its epochs (a number, or `latest`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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


# --- epochs -------------------------------------------------------------------------------

LATEST = "latest"


class EpochLookupError(JobLookupError):
    """`latest`, or a default epoch, names nothing: the job has too few epochs (exit code 2)."""


def is_epoch_ref(text: str) -> bool:
    """What `--epoch` takes: `latest` or an epoch number."""
    return text == LATEST or (text.isascii() and text.isdigit())


def resolve_epoch(job: Job, ref: str | None) -> int | None:
    """`--epoch` as a number: `latest` is the job's last epoch (None: no filter)."""
    if ref is None:
        return None
    if ref != LATEST:
        return int(ref)
    if job.latest_epoch is None:
        raise EpochLookupError(f"job {job.id} has no predictions yet, so no latest epoch")
    return job.latest_epoch


def compare_epochs(
    job_id: str, epochs: Sequence[int], from_ref: str | None, to_ref: str | None
) -> tuple[int, int]:
    """The epochs to compare: `to` defaults to the latest, `from` to the epoch before `to`
    (among the epochs that have predictions)."""
    known = sorted(epochs)
    needs_known = LATEST in (from_ref, to_ref) or from_ref is None or to_ref is None
    if needs_known and not known:
        raise EpochLookupError(f"job {job_id} has no predictions yet")
    to_epoch = known[-1] if to_ref in (None, LATEST) else int(str(to_ref))
    if from_ref is None:
        earlier = [epoch for epoch in known if epoch < to_epoch]
        if not earlier:
            shown = ", ".join(map(str, known))
            raise EpochLookupError(
                f"no epoch before {to_epoch} to compare with (job {job_id} has predictions in "
                f"epoch {shown}); pass --from-epoch"
            )
        return earlier[-1], to_epoch
    from_epoch = known[-1] if from_ref == LATEST else int(from_ref)
    return from_epoch, to_epoch


def cross_job_epochs(
    jobs: tuple[str, str],
    epochs: tuple[Sequence[int], Sequence[int]],
    refs: tuple[str | None, str | None],
) -> tuple[int, int]:
    """The epochs to compare across two jobs: each side defaults to (and `latest` means) the
    last epoch with predictions of its own job: two runs' final answers side by side."""
    chosen: list[int] = []
    for job_id, known, ref in zip(jobs, epochs, refs, strict=True):
        if ref not in (None, LATEST):
            chosen.append(int(str(ref)))
        elif not known:
            raise EpochLookupError(f"job {job_id} has no predictions yet")
        else:
            chosen.append(max(known))
    return chosen[0], chosen[1]
