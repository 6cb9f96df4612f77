"""Storage: engine setup, table definitions and Alembic migrations."""

from finetune_lab.server.db.engine import Database, normalize_url
from finetune_lab.server.db.migrate import upgrade

__all__ = ["Database", "normalize_url", "upgrade"]
