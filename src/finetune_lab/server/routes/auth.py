from __future__ import annotations

from fastapi import APIRouter, Body

from finetune_lab.schema import SessionCreate, SessionResponse, WhoAmI
from finetune_lab.server.deps import AnyPrincipal, Db
from finetune_lab.server.errors import APIError
from finetune_lab.server.services.keys import create_session

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/session", status_code=201, response_model=SessionResponse)
def new_session(
    body: SessionCreate | None = Body(default=None),
    *,
    principal: AnyPrincipal,
    db: Db,
) -> dict[str, object]:
    """Trade an API key for a short-lived token (the dashboard never keeps the raw key)."""
    if principal.credential != "api_key" or principal.api_key_id is None:
        raise APIError(403, "sessions are issued for API keys only")
    ttl = (body or SessionCreate()).ttl_seconds
    token, expires_at = create_session(db, principal.api_key_id, ttl)
    return {
        "token": token,
        "token_type": "bearer",
        "expires_at": expires_at,
        "user": principal.user,
        "scopes": list(principal.scopes),
    }


@router.get("/whoami", response_model=WhoAmI)
def whoami(principal: AnyPrincipal) -> dict[str, object]:
    return {
        "user": principal.user,
        "credential": principal.credential,
        "scopes": list(principal.scopes),
        "job_id": principal.job_id,
    }
