"""`client.models`: register the models that predict and batch tests use."""

from __future__ import annotations

from finetune_lab.client._transport import (
    AsyncTransport,
    RequestSpec,
    SyncTransport,
    parse_model,
    path_segment,
)
from finetune_lab.schema_serving import Device, ModelDeleted, ModelKind, ModelsList, RegisteredModel

_PREFIX = "/api/models"


def _register_spec(
    name: str,
    kind: ModelKind,
    base_url: str | None,
    upstream_model: str | None,
    api_key: str | None,
    path: str | None,
    device: Device,
    description: str | None,
    job_id: str | None = None,
    step: int | None = None,
) -> RequestSpec[RegisteredModel]:
    body = {
        "name": name,
        "kind": kind,
        "base_url": base_url,
        "upstream_model": upstream_model,
        "api_key": api_key,
        "path": path,
        "device": device,
        "description": description,
        "job_id": job_id,
        "step": step,
    }
    body = {key: value for key, value in body.items() if value is not None}
    return RequestSpec("POST", _PREFIX, parse_model(RegisteredModel), json=body)


def _get_spec(model_id: str) -> RequestSpec[RegisteredModel]:
    return RequestSpec("GET", f"{_PREFIX}/{path_segment(model_id)}", parse_model(RegisteredModel))


def _list_spec() -> RequestSpec[ModelsList]:
    return RequestSpec("GET", _PREFIX, parse_model(ModelsList))


def _delete_spec(model_id: str) -> RequestSpec[ModelDeleted]:
    return RequestSpec("DELETE", f"{_PREFIX}/{path_segment(model_id)}", parse_model(ModelDeleted))


class Models:
    """Sync access to `/api/models`."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def register(
        self,
        name: str,
        *,
        kind: ModelKind,
        base_url: str | None = None,
        upstream_model: str | None = None,
        api_key: str | None = None,
        path: str | None = None,
        device: Device = "auto",
        description: str | None = None,
        job_id: str | None = None,
        step: int | None = None,
    ) -> RegisteredModel:
        """An OpenAI-compatible endpoint (`base_url`, `upstream_model`, `api_key`, kept on the
        server and never returned) or a local checkpoint directory on the server (`path`).
        `job_id`/`step`: the training job and round the checkpoint came from (its calls'
        spans then carry them, and the job page shows how it is served)."""
        spec = _register_spec(
            name, kind, base_url, upstream_model, api_key, path, device, description, job_id, step
        )
        return self._transport.execute(spec)

    def list(self) -> ModelsList:
        return self._transport.execute(_list_spec())

    def get(self, model_id: str) -> RegisteredModel:
        return self._transport.execute(_get_spec(model_id))

    def delete(self, model_id: str) -> ModelDeleted:
        return self._transport.execute(_delete_spec(model_id))


class AsyncModels:
    """Async access to `/api/models`; same methods as `Models`."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def register(
        self,
        name: str,
        *,
        kind: ModelKind,
        base_url: str | None = None,
        upstream_model: str | None = None,
        api_key: str | None = None,
        path: str | None = None,
        device: Device = "auto",
        description: str | None = None,
        job_id: str | None = None,
        step: int | None = None,
    ) -> RegisteredModel:
        """An OpenAI-compatible endpoint (`base_url`, `upstream_model`, `api_key`, kept on the
        server and never returned) or a local checkpoint directory on the server (`path`).
        `job_id`/`step`: the training job and round the checkpoint came from (its calls'
        spans then carry them, and the job page shows how it is served)."""
        spec = _register_spec(
            name, kind, base_url, upstream_model, api_key, path, device, description, job_id, step
        )
        return await self._transport.execute(spec)

    async def list(self) -> ModelsList:
        return await self._transport.execute(_list_spec())

    async def get(self, model_id: str) -> RegisteredModel:
        return await self._transport.execute(_get_spec(model_id))

    async def delete(self, model_id: str) -> ModelDeleted:
        return await self._transport.execute(_delete_spec(model_id))


__all__ = ["AsyncModels", "Models"]
