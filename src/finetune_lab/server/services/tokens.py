"""How keys and tokens are made and stored (only their SHA-256 ever reaches the database)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timezone

API_KEY_PREFIX = "flk_"
SESSION_PREFIX = "fls_"
JOB_TOKEN_PREFIX = "fjt_"


def new_secret(prefix: str) -> str:
    # 32 random bytes → 43 base64url characters.
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
