"""Fast JSON responses: hot routes hand plain dicts to orjson instead of re-validating them."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from finetune_lab.server.db import Database

JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


class JSONBytesResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=JSON_OPTIONS)


async def get_db(request: Request) -> Database:
    """Async on purpose: a sync dependency costs a thread hop per request."""
    db: Database = request.app.state.db
    return db
