"""Users, API keys and session tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from finetune_lab.schema import SCOPES
from finetune_lab.server.db import Database
from finetune_lab.server.db.tables import api_keys, sessions, users
from finetune_lab.server.services.tokens import (
    API_KEY_PREFIX,
    SESSION_PREFIX,
    hash_secret,
    new_secret,
    utcnow,
)


@dataclass(frozen=True)
class NewKey:
    id: int
    key: str
    prefix: str
    user: str
    scopes: list[str]


def parse_scopes(text: str | list[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else text
    scopes = sorted({item.strip() for item in items if item.strip()})
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {unknown}; choose from {', '.join(SCOPES)}")
    return ["all"] if "all" in scopes else scopes


def _ensure_user(conn: Connection, name: str) -> int:
    user_id = conn.scalar(select(users.c.id).where(users.c.name == name))
    if user_id is None:
        user_id = conn.execute(
            insert(users).values(name=name, created_at=utcnow()).returning(users.c.id)
        ).scalar_one()
    return int(user_id)


def create_key(db: Database, *, user: str, name: str, scopes: str | list[str]) -> NewKey:
    scope_list = parse_scopes(scopes)
    key = new_secret(API_KEY_PREFIX)
    prefix = key[:12]
    with db.write() as conn:
        user_id = _ensure_user(conn, user)
        key_id = conn.execute(
            insert(api_keys)
            .values(
                user_id=user_id,
                name=name,
                prefix=prefix,
                key_hash=hash_secret(key),
                scopes=scope_list,
                created_at=utcnow(),
            )
            .returning(api_keys.c.id)
        ).scalar_one()
    return NewKey(id=int(key_id), key=key, prefix=prefix, user=user, scopes=scope_list)


def list_keys(db: Database, *, user: str | None = None) -> list[dict[str, Any]]:
    query = (
        select(
            api_keys.c.id,
            api_keys.c.name,
            api_keys.c.prefix,
            api_keys.c.scopes,
            api_keys.c.created_at,
            api_keys.c.last_used_at,
            api_keys.c.revoked_at,
            users.c.name.label("user"),
        )
        .join(users, users.c.id == api_keys.c.user_id)
        .order_by(api_keys.c.id)
    )
    if user is not None:
        query = query.where(users.c.name == user)
    with db.read() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def revoke_key(db: Database, id_or_prefix: str) -> int:
    """Revoke keys by numeric id or by prefix; returns how many were revoked."""
    column = api_keys.c.id if id_or_prefix.isdigit() else api_keys.c.prefix
    value: Any = int(id_or_prefix) if id_or_prefix.isdigit() else id_or_prefix
    with db.write() as conn:
        result = conn.execute(
            update(api_keys)
            .where(column == value, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    return int(result.rowcount)


# Expired sessions removed per new session: more than one, so the table cannot grow with
# expired rows; bounded, so one sign-in never pays for a long backlog.
PURGE_BATCH = 100


def _purge_expired_sessions(conn: Connection, now: datetime) -> int:
    """Delete up to PURGE_BATCH expired sessions (oldest ids first). SKIP LOCKED on PostgreSQL:
    two processes purging at once take different rows instead of waiting on (or deadlocking
    over) each other's; SQLite writers are serialized anyway."""
    expired = (
        select(sessions.c.id)
        .where(sessions.c.expires_at <= now)
        .order_by(sessions.c.id)
        .limit(PURGE_BATCH)
        .with_for_update(skip_locked=True)
    )
    ids = list(conn.scalars(expired))
    if not ids:
        return 0
    return int(conn.execute(delete(sessions).where(sessions.c.id.in_(ids))).rowcount)


def create_session(db: Database, api_key_id: int, ttl_seconds: int) -> tuple[str, Any]:
    """A new session token; expired sessions are deleted in the same transaction."""
    token = new_secret(SESSION_PREFIX)
    now = utcnow()
    expires_at = now + timedelta(seconds=ttl_seconds)
    with db.write() as conn:
        _purge_expired_sessions(conn, now)
        conn.execute(
            insert(sessions).values(
                api_key_id=api_key_id,
                token_hash=hash_secret(token),
                created_at=now,
                expires_at=expires_at,
            )
        )
    return token, expires_at
