from __future__ import annotations

from fastapi import APIRouter

from finetune_lab import __version__
from finetune_lab.schema import Health
from finetune_lab.server.deps import Db

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, openapi_extra={"security": []})
async def healthz(db: Db) -> dict[str, str]:
    return {"status": "ok", "version": __version__, "database": db.backend}
