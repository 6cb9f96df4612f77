from __future__ import annotations

from fastapi import APIRouter, Depends

from finetune_lab import __version__
from finetune_lab.schema import Health
from finetune_lab.server.db import Database
from finetune_lab.server.responses import get_db

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, openapi_extra={"security": []})
async def healthz(db: Database = Depends(get_db)) -> dict[str, str]:
    return {"status": "ok", "version": __version__, "database": db.backend}
