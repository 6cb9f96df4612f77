"""The app in the test process: `create_app(Settings(...))` behind starlette's `TestClient`.

The fast layer: no subprocess, no port, no PostgreSQL; a request costs about a millisecond.
For route wiring, dependencies, error shapes and small flows. What needs a real process
(signals, several servers on one database, SSE timing, both backends) stays with the
real-server fixtures (`server`, `http`, `make_server`), the end-to-end layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.testclient import TestClient

from finetune_lab.server.app import create_app
from finetune_lab.server.db import Database
from finetune_lab.server.services.keys import create_key
from finetune_lab.server.settings import Settings


@dataclass
class InProcessApp:
    app: FastAPI
    client: TestClient  # sends the all-scopes key of user `alice`
    key: str

    @property
    def db(self) -> Database:
        db: Database = self.app.state.db
        return db

    def new_key(self, user: str, scopes: str = "all") -> str:
        return create_key(self.db, user=user, name=f"{user}-{scopes}", scopes=scopes).key


def app_settings(folder: Path, **overrides: Any) -> Settings:
    """SQLite in `folder`, scoring in this process, no rate limit."""
    base = Settings(
        database_url=f"sqlite:///{folder / 'app.db'}",
        rate_limit="off",
        rate_limit_storage="memory://",
        scoring_workers=0,
    )
    return replace(base, **overrides)


@contextlib.contextmanager
def inprocess_app(folder: Path, **overrides: Any) -> Iterator[InProcessApp]:
    """The app with its lifespan running (scoring pool, batch worker) for the block."""
    app = create_app(app_settings(folder, **overrides))
    key = create_key(app.state.db, user="alice", name="test", scopes="all").key
    with TestClient(app, headers={"X-API-Key": key}) as client:
        yield InProcessApp(app, client, key)
