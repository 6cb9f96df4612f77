"""Rows as plain dicts: SQLAlchemy's column-name keys are a str subclass orjson refuses."""

from __future__ import annotations

from typing import Any


def plain(row: Any) -> dict[str, Any]:
    return {str(key): value for key, value in row._mapping.items()}
