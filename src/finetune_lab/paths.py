"""Where FineTune Lab keeps its files on this machine (server database, training spool)."""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """`FINETUNE_LAB_HOME`, else `~/.finetune-lab`."""
    return Path(os.environ.get("FINETUNE_LAB_HOME") or Path.home() / ".finetune-lab")


def default_spool_dir() -> Path:
    return home_dir() / "spool"
