"""`client.jobs`: create (or resume), read, list, update and delete training jobs."""

from __future__ import annotations

from typing import Any

from finetune_lab.client._transport import (
    AsyncTransport,
    RequestSpec,
    SyncTransport,
    parse_model,
    path_segment,
)
from finetune_lab.schema import Job, JobDeleted, JobsPage, JobStatus

_PREFIX = "/api/training/jobs"


def _set_fields(**fields: Any) -> dict[str, Any]:
    """Only the fields the caller set: PATCH leaves the others alone."""
    return {key: value for key, value in fields.items() if value is not None}


def _create_spec(
    id: str | None, name: str | None, model_name: str | None, config: dict[str, Any] | None
) -> RequestSpec[Job]:
    body = _set_fields(id=id, name=name, model_name=model_name, config=config)
    # With an explicit id a repeat resumes the same job (200), so retrying cannot duplicate it.
    return RequestSpec("POST", _PREFIX, parse_model(Job), json=body, idempotent=id is not None)


def _get_spec(job_id: str) -> RequestSpec[Job]:
    return RequestSpec("GET", f"{_PREFIX}/{path_segment(job_id)}", parse_model(Job))


def _list_spec(status: JobStatus | None, limit: int, offset: int) -> RequestSpec[JobsPage]:
    params = {"status": status, "limit": limit, "offset": offset}
    return RequestSpec("GET", _PREFIX, parse_model(JobsPage), params=params)


def _update_spec(job_id: str, status: JobStatus | None, name: str | None) -> RequestSpec[Job]:
    body = _set_fields(status=status, name=name)
    return RequestSpec("PATCH", f"{_PREFIX}/{path_segment(job_id)}", parse_model(Job), json=body)


def _delete_spec(job_id: str) -> RequestSpec[JobDeleted]:
    return RequestSpec("DELETE", f"{_PREFIX}/{path_segment(job_id)}", parse_model(JobDeleted))


def _token_spec(method: str, job_id: str) -> RequestSpec[Job]:
    # Safe to retry: a repeated rotation only kills a token whose answer was lost.
    path = f"{_PREFIX}/{path_segment(job_id)}/token"
    return RequestSpec(method, path, parse_model(Job), idempotent=True)


class Jobs:
    """Sync access to `/api/training/jobs`."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(
        self,
        *,
        id: str | None = None,
        name: str | None = None,
        model_name: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> Job:
        """Create a job; with the `id` of one of your jobs, resume it (`job_token` is then None)."""
        return self._transport.execute(_create_spec(id, name, model_name, config))

    def get(self, job_id: str) -> Job:
        return self._transport.execute(_get_spec(job_id))

    def list(
        self, *, status: JobStatus | None = None, limit: int = 50, offset: int = 0
    ) -> JobsPage:
        """Your jobs, newest first."""
        return self._transport.execute(_list_spec(status, limit, offset))

    def update(
        self, job_id: str, *, status: JobStatus | None = None, name: str | None = None
    ) -> Job:
        return self._transport.execute(_update_spec(job_id, status, name))

    def delete(self, job_id: str) -> JobDeleted:
        """Delete the job and all its predictions."""
        return self._transport.execute(_delete_spec(job_id))

    def rotate_token(self, job_id: str) -> Job:
        """A new `job_token` bound to this client's key; the previous token stops working."""
        return self._transport.execute(_token_spec("POST", job_id))

    def revoke_token(self, job_id: str) -> Job:
        """End the job's token now; `rotate_token` issues a new one."""
        return self._transport.execute(_token_spec("DELETE", job_id))


class AsyncJobs:
    """Async access to `/api/training/jobs`; same methods as `Jobs`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(
        self,
        *,
        id: str | None = None,
        name: str | None = None,
        model_name: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> Job:
        """Create a job; with the `id` of one of your jobs, resume it (`job_token` is then None)."""
        return await self._transport.execute(_create_spec(id, name, model_name, config))

    async def get(self, job_id: str) -> Job:
        return await self._transport.execute(_get_spec(job_id))

    async def list(
        self, *, status: JobStatus | None = None, limit: int = 50, offset: int = 0
    ) -> JobsPage:
        """Your jobs, newest first."""
        return await self._transport.execute(_list_spec(status, limit, offset))

    async def update(
        self, job_id: str, *, status: JobStatus | None = None, name: str | None = None
    ) -> Job:
        return await self._transport.execute(_update_spec(job_id, status, name))

    async def delete(self, job_id: str) -> JobDeleted:
        """Delete the job and all its predictions."""
        return await self._transport.execute(_delete_spec(job_id))

    async def rotate_token(self, job_id: str) -> Job:
        """A new `job_token` bound to this client's key; the previous token stops working."""
        return await self._transport.execute(_token_spec("POST", job_id))

    async def revoke_token(self, job_id: str) -> Job:
        """End the job's token now; `rotate_token` issues a new one."""
        return await self._transport.execute(_token_spec("DELETE", job_id))


__all__ = ["AsyncJobs", "Jobs"]
