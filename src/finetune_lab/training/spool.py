"""The on-disk write-ahead spool every recorded round goes through.

A round is written here (atomically) before any network call, and its file is removed only
after the server has stored it. A killed process, a server that is down for the whole run or a
network that drops mid-request therefore lose nothing: whatever is left is uploaded later by the
live sender or by `finetune-lab sync`. Re-sending is harmless because ingest is an upsert on
`(job_id, step, sample_index)`.

Layout: `<root>/<job_id>/job.json` (server URL, how to create the job, its job token) and
`<root>/<job_id>/batches/*.json` (one file per round, oldest first by name).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

_TMP_PREFIX = ".tmp-"
_counter = itertools.count()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, then rename: readers see the whole file or none of it."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class JobSpool:
    """The spool of one job: its metadata and the rounds not yet confirmed by the server."""

    def __init__(self, root: str | os.PathLike[str], job_id: str) -> None:
        self.job_id = job_id
        self.directory = Path(root) / job_id
        self.batches = self.directory / "batches"
        self.rejected = self.directory / "rejected"

    # -- job metadata -------------------------------------------------------------------------
    @property
    def _meta_path(self) -> Path:
        return self.directory / "job.json"

    def read_meta(self) -> dict[str, Any]:
        try:
            data = orjson.loads(self._meta_path.read_bytes())
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def update_meta(self, **fields: Any) -> None:
        self.batches.mkdir(parents=True, exist_ok=True)
        meta = self.read_meta()
        meta.update(fields)
        _write_atomic(self._meta_path, orjson.dumps(meta))

    # -- batches ------------------------------------------------------------------------------
    def append(self, rows: list[dict[str, Any]]) -> Path:
        """Persist one round; names sort in write order, even across processes."""
        self.batches.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}.json"
        path = self.batches / name
        _write_atomic(path, orjson.dumps({"predictions": rows}))
        return path

    def pending(self) -> list[Path]:
        try:
            names = sorted(
                p
                for p in os.listdir(self.batches)
                if p.endswith(".json") and not p.startswith(_TMP_PREFIX)
            )
        except FileNotFoundError:
            return []
        return [self.batches / name for name in names]

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        rows = orjson.loads(path.read_bytes())["predictions"]
        return list(rows)

    @staticmethod
    def delivered(path: Path) -> None:
        path.unlink(missing_ok=True)  # another uploader (sync) may have got there first

    def reject(self, path: Path, reason: str) -> None:
        """Keep a batch the server refuses for good out of the way, with the reason beside it."""
        self.rejected.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, self.rejected / path.name)
            (self.rejected / f"{path.stem}.error.txt").write_text(reason, encoding="utf-8")

    def remove_if_done(self) -> bool:
        """Delete the job's spool once nothing is pending or rejected; True if removed."""
        if self.pending() or (self.rejected.exists() and any(self.rejected.iterdir())):
            return False
        with contextlib.suppress(FileNotFoundError):
            for leftover in self.batches.iterdir():  # stale temp files of a killed writer
                leftover.unlink()
        for path in (self.batches, self.rejected):
            with contextlib.suppress(FileNotFoundError):
                path.rmdir()
        self._meta_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()
        return True


def spooled_jobs(root: str | os.PathLike[str]) -> Iterator[JobSpool]:
    """Every job with a spool under `root`."""
    base = Path(root)
    if not base.is_dir():
        return
    for entry in sorted(base.iterdir()):
        if (entry / "job.json").exists() or (entry / "batches").is_dir():
            yield JobSpool(base, entry.name)
