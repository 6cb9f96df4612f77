"""Registered models: OpenAI-compatible endpoints and local checkpoints, each its owner's alone."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError

from finetune_lab.schema_serving import ModelCreate
from finetune_lab.server.auth import Principal
from finetune_lab.server.db import Database
from finetune_lab.server.db.serving_tables import models
from finetune_lab.server.db.tables import jobs
from finetune_lab.server.errors import APIError, not_found, validation_error
from finetune_lab.server.redact import mask_url, redact, url_secrets
from finetune_lab.server.services.tokens import utcnow

PUBLIC_COLUMNS = (
    models.c.id,
    models.c.name,
    models.c.kind,
    models.c.description,
    models.c.base_url,
    models.c.upstream_model,
    models.c.path,
    models.c.device,
    models.c.job_id,
    models.c.step,
    models.c.created_at,
)


def to_wire(row: Any) -> dict[str, Any]:
    """What a client sees: never the key, and `base_url` with its credentials masked."""
    data = {str(column.name): row._mapping[column.name] for column in PUBLIC_COLUMNS}
    data["base_url"] = mask_url(data["base_url"])
    data["has_api_key"] = bool(row._mapping.get("api_key"))
    return data


def _url_problem(url: str) -> str | None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"base_url is not a valid URL: {exc}"
    if not parsed.host:
        return "base_url has no host"
    return None


def _checkpoint_problem(path: str) -> str | None:
    directory = Path(path)
    if not directory.is_absolute():
        return "path must be an absolute directory path on the server"
    if not directory.is_dir():
        return f"no directory at {path} on the server"
    if not (directory / "config.json").is_file():
        return f"{path} is not a Hugging Face checkpoint (no config.json)"
    return None


def _check_job(conn: Connection, principal: Principal, job_id: str) -> None:
    """A checkpoint names only its owner's jobs; another user's job reads as no job at all."""
    owned = conn.execute(
        select(jobs.c.id).where(jobs.c.id == job_id, jobs.c.user_id == principal.user_id)
    ).first()
    if owned is None:
        problem = f"you have no training job {job_id!r}"
        raise validation_error(
            problem, [{"loc": ["body", "job_id"], "message": problem, "type": "value_error"}]
        )


def create_model(db: Database, principal: Principal, body: ModelCreate) -> dict[str, Any]:
    if body.kind == "local":
        assert body.path is not None
        problem = _checkpoint_problem(body.path)
        if problem:
            raise validation_error(
                problem, [{"loc": ["body", "path"], "message": problem, "type": "value_error"}]
            )
    if body.kind == "openai":
        problem = _url_problem(body.base_url or "")
        if problem:
            problem = redact(problem, url_secrets(body.base_url))
            raise validation_error(
                problem, [{"loc": ["body", "base_url"], "message": problem, "type": "value_error"}]
            )
    values = body.model_dump()
    values["id"] = f"mdl_{uuid.uuid4().hex}"
    values["user_id"] = principal.user_id
    values["created_at"] = utcnow()
    if body.kind == "openai":
        values["base_url"] = (body.base_url or "").rstrip("/")
        values["upstream_model"] = body.upstream_model or body.name
    try:
        with db.write() as conn:
            if body.job_id is not None:
                _check_job(conn, principal, body.job_id)
            conn.execute(insert(models).values(**values))
            row = conn.execute(select(models).where(models.c.id == values["id"])).one()
    except IntegrityError:
        raise APIError(409, f"you already have a model named {body.name!r}") from None
    return to_wire(row)


def find_model(conn: Connection, principal: Principal, id_or_name: str) -> Any:
    """The caller's model by id or name (the `model` of a chat body), or None."""
    return conn.execute(
        select(models).where(
            models.c.user_id == principal.user_id,
            or_(models.c.id == id_or_name, models.c.name == id_or_name),
        )
    ).first()


def owned_model(conn: Connection, principal: Principal, id_or_name: str) -> Any:
    row = find_model(conn, principal, id_or_name)
    if row is None:
        raise not_found("model")
    return row


def get_model(db: Database, principal: Principal, model_id: str) -> dict[str, Any]:
    with db.read() as conn:
        return to_wire(owned_model(conn, principal, model_id))


def list_models(db: Database, principal: Principal) -> dict[str, Any]:
    with db.read() as conn:
        rows = conn.execute(
            select(models)
            .where(models.c.user_id == principal.user_id)
            .order_by(models.c.created_at.desc(), models.c.id)
        ).all()
    return {"models": [to_wire(row) for row in rows]}


def openai_model_list(db: Database, principal: Principal) -> dict[str, Any]:
    """The caller's models as OpenAI's `GET /v1/models` lists them, oldest first; each `id` is
    the name a chat body's `model` takes."""
    with db.read() as conn:
        rows = conn.execute(
            select(models.c.name, models.c.created_at)
            .where(models.c.user_id == principal.user_id)
            .order_by(models.c.created_at, models.c.id)
        ).all()
    return {
        "object": "list",
        "data": [
            {
                "id": row.name,
                "object": "model",
                "created": int(row.created_at.timestamp()),
                "owned_by": principal.user,
            }
            for row in rows
        ],
    }


def delete_model(db: Database, principal: Principal, model_id: str) -> dict[str, Any]:
    with db.write() as conn:
        row = owned_model(conn, principal, model_id)
        conn.execute(delete(models).where(models.c.id == row.id))
    return {"id": row.id, "deleted": True}
