"""Who is calling: API key, session token or job token, and what they may do.

Secrets are looked up by their SHA-256 through a unique index: one indexed read, no scan,
and the timing of that lookup depends on the hash, not on how much of a guess was right.
Sessions and job tokens are valid only while the API key behind them is, and spend its rate
budget. `admit` runs from the headers alone, before any body is read (server/credential_gate.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from fastapi import Depends, Request
from sqlalchemy import select, update
from starlette.concurrency import run_in_threadpool

from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import api_keys, jobs, sessions, users
from finetune_lab.server.errors import APIError
from finetune_lab.server.rate_limit import RateLimiter
from finetune_lab.server.services.tokens import (
    API_KEY_PREFIX,
    JOB_TOKEN_PREFIX,
    SESSION_PREFIX,
    hash_secret,
    utcnow,
)

LAST_USED_EVERY_S = 60.0
#: Where the gate leaves the caller in the ASGI scope for the route's dependency.
PRINCIPAL_SCOPE_KEY = "finetune_lab.principal"


@dataclass(frozen=True)
class Principal:
    user_id: int
    user: str
    credential: str  # api_key | session | job_token
    scopes: tuple[str, ...]
    api_key_id: int  # the key itself, the session's key, or the key the job token is bound to
    key_hash: str  # that key's SHA-256: names its rate budget, unique across databases
    job_id: str | None = None  # set for job tokens: the only job they may write

    def allows(self, scope: str) -> bool:
        return "all" in self.scopes or scope in self.scopes

    @property
    def rate_bucket(self) -> str:
        """Whose budget a request spends: always its API key's (sessions and job tokens too)."""
        return f"key:{self.key_hash[:32]}"


def credential_from(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class Authenticator:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._last_used_marks: dict[int, float] = {}
        self._marks_lock = threading.Lock()

    def authenticate(self, secret: str) -> Principal | None:
        digest = hash_secret(secret)
        if secret.startswith(API_KEY_PREFIX):
            return self._api_key(digest)
        if secret.startswith(SESSION_PREFIX):
            return self._session(digest)
        if secret.startswith(JOB_TOKEN_PREFIX):
            return self._job_token(digest)
        return None

    def _api_key(self, digest: str) -> Principal | None:
        query = (
            select(
                api_keys.c.id,
                api_keys.c.scopes,
                api_keys.c.key_hash,
                users.c.id.label("uid"),
                users.c.name,
            )
            .join(users, users.c.id == api_keys.c.user_id)
            .where(api_keys.c.key_hash == digest, api_keys.c.revoked_at.is_(None))
        )
        with self.db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        self._mark_used(int(row.id))
        return Principal(
            int(row.uid), row.name, "api_key", tuple(row.scopes), int(row.id), row.key_hash
        )

    def _session(self, digest: str) -> Principal | None:
        query = (
            select(
                sessions.c.expires_at,
                api_keys.c.id,
                api_keys.c.scopes,
                api_keys.c.key_hash,
                users.c.id.label("uid"),
                users.c.name,
            )
            .join(api_keys, api_keys.c.id == sessions.c.api_key_id)
            .join(users, users.c.id == api_keys.c.user_id)
            .where(sessions.c.token_hash == digest, api_keys.c.revoked_at.is_(None))
        )
        with self.db.read() as conn:
            row = conn.execute(query).first()
        if row is None or row.expires_at <= utcnow():
            return None
        return Principal(
            int(row.uid), row.name, "session", tuple(row.scopes), int(row.id), row.key_hash
        )

    def _job_token(self, digest: str) -> Principal | None:
        # Only while the job's key is alive: revoking the key ends its jobs' tokens too.
        query = (
            select(
                jobs.c.id,
                api_keys.c.id.label("key_id"),
                api_keys.c.key_hash,
                users.c.id.label("uid"),
                users.c.name,
            )
            .join(api_keys, api_keys.c.id == jobs.c.api_key_id)
            .join(users, users.c.id == jobs.c.user_id)
            .where(jobs.c.job_token_hash == digest, api_keys.c.revoked_at.is_(None))
        )
        with self.db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return Principal(
            int(row.uid),
            row.name,
            "job_token",
            ("training",),
            int(row.key_id),
            row.key_hash,
            job_id=row.id,
        )

    def _mark_used(self, key_id: int) -> None:
        """Record last use at most once a minute per key: no write on every request."""
        now = time.monotonic()
        with self._marks_lock:
            if now - self._last_used_marks.get(key_id, -LAST_USED_EVERY_S) < LAST_USED_EVERY_S:
                return
            self._last_used_marks[key_id] = now
        with self.db.write() as conn:
            conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=utcnow())
            )


def admit(
    authenticator: Authenticator, limiter: RateLimiter, headers: Mapping[str, str]
) -> Principal:
    """The caller named by the headers, charged one request; 401 or 429 otherwise.

    Blocking (a database read, maybe a Redis round trip): call it from a worker thread."""
    secret = credential_from(headers)
    if secret is None:
        raise APIError(401, "missing credentials: send X-API-Key or Authorization: Bearer")
    principal = authenticator.authenticate(secret)
    if principal is None:
        raise APIError(401, "invalid, expired or revoked credentials")
    if limiter.enabled:
        limiter.check(principal.rate_bucket)
    return principal


async def current_principal(request: Request) -> Principal:
    """The caller the gate admitted (before the body was read); routes outside the gated
    prefixes are admitted here."""
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if isinstance(principal, Principal):
        return principal
    state = request.app.state
    return await run_in_threadpool(admit, state.authenticator, state.rate_limiter, request.headers)


def require_scope(scope: str, *, job_token_ok: bool = False) -> Callable[..., Awaitable[Principal]]:
    """Dependency: a caller with `scope`; job tokens only where the route says so."""

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.credential == "job_token" and not job_token_ok:
            raise APIError(403, "a job token may only write predictions into its own job")
        if not principal.allows(scope):
            raise APIError(403, f"this key lacks the '{scope}' scope")
        return principal

    return dependency
