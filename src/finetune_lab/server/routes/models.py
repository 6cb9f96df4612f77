"""`/api/models`: register, list, read and delete the models that predict and batch tests use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from finetune_lab.schema_serving import ModelCreate, ModelDeleted, ModelsList, RegisteredModel
from finetune_lab.server.deps import Db, Production
from finetune_lab.server.services import model_registry as service

router = APIRouter(prefix="/api/models", tags=["models"])


@router.post("", status_code=201, response_model=RegisteredModel)
def register_model(body: ModelCreate, principal: Production, db: Db) -> dict[str, Any]:
    """Register an OpenAI-compatible endpoint or a local checkpoint directory under a name."""
    return service.create_model(db, principal, body)


@router.get("", response_model=ModelsList)
def list_models(principal: Production, db: Db) -> dict[str, Any]:
    return service.list_models(db, principal)


@router.get("/{model_id}", response_model=RegisteredModel)
def get_model(model_id: str, principal: Production, db: Db) -> dict[str, Any]:
    return service.get_model(db, principal, model_id)


@router.delete("/{model_id}", response_model=ModelDeleted)
def delete_model(model_id: str, principal: Production, db: Db) -> dict[str, Any]:
    return service.delete_model(db, principal, model_id)
