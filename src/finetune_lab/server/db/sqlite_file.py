"""The SQLite database file is private to its owner (mode 0600): it holds upstream model API
keys and every prediction.

SQLite gives the `-wal`, `-shm` and `-journal` files it creates the mode of the database file,
so creating that file 0600 covers them. A file made by an older version (0644 under the
usual umask) is tightened at startup, side files included.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("finetune_lab.server.db")
PRIVATE_MODE = 0o600
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def sqlite_path(database: str | None) -> Path | None:
    """The file behind a SQLite URL's database part; None for memory or URI-style names."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def make_private(path: Path) -> None:
    """Create the database file 0600 if missing (its folder 0700 if missing); take group and
    other permissions off an existing one and its side files."""
    if os.name != "posix":
        return  # Windows: file modes do not express this (ACLs do)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)  # an empty file is a valid empty SQLite database
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SIDE_SUFFIXES)):
        _tighten(candidate)


def _tighten(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    try:
        os.chmod(path, mode & 0o700)
    except OSError as exc:  # not ours to change (another owner, read-only mount)
        log.warning(
            "%s is readable by other users (mode %o) and cannot be fixed: %s", path, mode, exc
        )
        return
    log.warning("%s was readable by other users (mode %o): now %o", path, mode, mode & 0o700)
