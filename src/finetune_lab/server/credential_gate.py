"""Credentials and the rate limit, checked from the headers before any body is read.

FastAPI reads and parses a route's declared body before it runs dependencies, so a check in a
dependency comes after up to 32 MiB of JSON parsed on the event loop. This middleware admits
every /api and /v1 request first (database read and rate-limit count in a worker thread) and
leaves the caller in the scope for `current_principal`; a refused request is answered 401 or
429 without its body ever being read. Other paths (/healthz, the dashboard, /docs) pass as is.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from finetune_lab.server.auth import PRINCIPAL_SCOPE_KEY, Authenticator, admit
from finetune_lab.server.errors import (
    DATABASE_UNAVAILABLE,
    APIError,
    database_unavailable,
    error_response,
)
from finetune_lab.server.middleware import API_PREFIXES
from finetune_lab.server.rate_limit import RateLimiter


class CredentialGate:
    def __init__(self, app: ASGIApp, authenticator: Authenticator, limiter: RateLimiter) -> None:
        self.app = app
        self.authenticator = authenticator
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        try:
            principal = await run_in_threadpool(
                admit, self.authenticator, self.limiter, Headers(scope=scope)
            )
        except APIError as exc:
            refusal = error_response(exc.status_code, exc.type, exc.message, headers=exc.headers)
            await refusal(scope, receive, send)
            return
        except DATABASE_UNAVAILABLE as exc:
            await database_unavailable(scope["method"], scope["path"], exc)(scope, receive, send)
            return
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await self.app(scope, receive, send)
