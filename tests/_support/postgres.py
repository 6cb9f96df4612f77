"""PostgreSQL for tests: a throwaway local cluster, or an external server named by an env var.

Either way the suite gets a fresh database per app server, so tests never see each other's rows
and no manual setup is needed beyond having the PostgreSQL 15 binaries installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .net import free_port, tail

#: Env var naming an existing server to use instead of starting one (any libpq/SQLAlchemy URL).
EXTERNAL_URL_ENV = "FINETUNE_LAB_TEST_POSTGRES_URL"
#: Env var overriding where the PostgreSQL binaries live.
BIN_DIR_ENV = "FINETUNE_LAB_TEST_PG_BIN"
DEFAULT_BIN_DIR = Path("/usr/lib/postgresql/15/bin")

# Runs detached next to the cluster: when the test process disappears without cleaning up
# (SIGKILL, crash), it stops PostgreSQL and removes the temp dir, so no postmaster outlives us.
_WATCHDOG = r"""
import json, os, shutil, subprocess, sys, time
parent, tmp, stop = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
while os.getppid() == parent:
    time.sleep(1)
try:
    subprocess.run(stop, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
except Exception:
    pass
shutil.rmtree(tmp, ignore_errors=True)
"""


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are not installed (callers decide between skip and fail)."""


def _sqlalchemy_url(libpq_url: str) -> str:
    """The same URL with the driver SQLAlchemy should use (psycopg 3)."""
    parts = urlsplit(libpq_url)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def _libpq_url(url: str, dbname: str | None = None) -> str:
    """Normalise any postgres URL to what psycopg accepts, optionally pointing at ``dbname``."""
    parts = urlsplit(url)
    if not parts.scheme.startswith(("postgres", "postgresql")):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    parts = parts._replace(scheme="postgresql")
    if dbname is not None:
        parts = parts._replace(path="/" + dbname)
    return urlunsplit(parts)


def _new_db_name() -> str:
    """A database name that cannot clash across parallel sessions sharing one server."""
    return f"ftl_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"


@dataclass
class PostgresServer:
    """A reachable PostgreSQL server; ``admin_url`` is a libpq URL to a database we may connect to.

    ``create_database`` returns SQLAlchemy URLs (``postgresql+psycopg://...``), which is what the
    app server's ``--database-url`` takes.
    """

    admin_url: str
    external: bool = False
    created: list[str] = field(default_factory=list)

    def libpq_url(self, dbname: str) -> str:
        """psycopg-style URL for ``dbname`` on this server."""
        return _libpq_url(self.admin_url, dbname)

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        name = name or _new_db_name()
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return _sqlalchemy_url(self.libpq_url(name))

    def close(self) -> None:
        """Drop what we created on a shared server; a local cluster is deleted wholesale instead."""
        if not self.external or not self.created:
            return
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
                for name in self.created:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
        except Exception as exc:  # best effort: leaking a test DB must not fail the session
            print(f"warning: could not drop test databases: {exc}", file=sys.stderr)
        self.created.clear()


def external_server() -> PostgresServer | None:
    """The server named by ``FINETUNE_LAB_TEST_POSTGRES_URL``, if set."""
    url = os.environ.get(EXTERNAL_URL_ENV, "").strip()
    if not url:
        return None
    return PostgresServer(admin_url=_libpq_url(url), external=True)


#: Speed over durability: a test cluster holds nothing worth an fsync. A crash (``stop
#: ("immediate")``) then loses the last acknowledged commits unless ``synchronous_commit=on``.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class LocalCluster(PostgresServer):
    """A private PostgreSQL cluster in a temp dir, tuned for speed (no fsync), on a free port.

    initdb refuses to run as root, so as root the dir is handed to the ``postgres`` user and the
    server runs as that user via ``runuser``.
    """

    def __init__(
        self, bin_dir: Path | None = None, *, settings: dict[str, str] | None = None
    ) -> None:
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.bin_dir = bin_dir or Path(os.environ.get(BIN_DIR_ENV, str(DEFAULT_BIN_DIR)))
        if not (self.bin_dir / "initdb").exists() or not (self.bin_dir / "pg_ctl").exists():
            raise PostgresUnavailable(f"PostgreSQL binaries not found in {self.bin_dir}")
        self.as_root = os.geteuid() == 0
        # /tmp is traversable by the postgres user even when TMPDIR points under /root.
        self.tmp = Path(tempfile.mkdtemp(prefix="ftl-pg-", dir="/tmp" if self.as_root else None))
        self.data_dir = self.tmp / "data"
        self.socket_dir = self.tmp / "sock"
        self.log_path = self.tmp / "postgres.log"
        self.port = 0
        self._opts = ""
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._running = False
        super().__init__(admin_url="")
        try:
            self._init_and_start()
        except BaseException:
            self.close()
            raise

    # -- process plumbing -------------------------------------------------------------------
    def _cmd(self, tool: str, *args: str) -> list[str]:
        """Command line for a PostgreSQL tool, run as ``postgres`` when we are root."""
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return [*prefix, str(self.bin_dir / tool), *args]

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # cwd inside the temp dir: the postgres user may not be able to read the caller's cwd.
        return subprocess.run(
            self._cmd(tool, *args),
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _stop_cmd(self, mode: str) -> list[str]:
        return self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def _init_and_start(self) -> None:
        self.socket_dir.mkdir()
        if self.as_root:
            for path in (self.tmp, self.socket_dir):
                shutil.chown(path, user="postgres", group="postgres")
        # --no-locale: independent of whatever LANG the machine has (or lacks).
        # fmt: off
        initdb_args = [
            "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--no-locale",
        ]
        # fmt: on
        res = self._run("initdb", *initdb_args)
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        self._watchdog = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WATCHDOG,
                str(os.getpid()),
                str(self.tmp),
                json.dumps(self._stop_cmd("immediate")),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives a Ctrl-C aimed at pytest's process group
        )
        last_error = ""
        for _ in range(3):  # the port can be grabbed between free_port() and bind(): retry
            self.port = free_port()
            opts = " ".join(
                [
                    f"-p {self.port}",
                    f"-k {self.socket_dir}",
                    "-c listen_addresses=127.0.0.1",
                    *(f"-c {name}={value}" for name, value in self.settings.items()),
                ]
            )
            self._opts = opts
            res = self._pg_ctl_start()
            if res.returncode == 0:
                self._running = True
                self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
                self._wait_ready()
                return
            last_error = f"{res.stdout}\n{res.stderr}\n{tail(self._read_log())}"
            if "already in use" not in last_error:
                break
        raise RuntimeError(f"pg_ctl start failed:\n{last_error}")

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        start_args = ["-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60"]
        return self._run("pg_ctl", *start_args, "-o", self._opts, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop PostgreSQL but keep the cluster (fault tests); ``start()`` brings it back.
        ``immediate`` is a crash: the next start replays the WAL."""
        res = self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed:\n{res.stdout}\n{res.stderr}")
        self._running = False

    def start(self) -> None:
        """Start a stopped cluster again on the same port."""
        res = self._pg_ctl_start()
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}")
        self._running = True
        self._wait_ready()

    def _read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, timeout: float = 30) -> None:
        """pg_ctl -w already waits; this checks that TCP connections really work."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL not accepting connections: {exc}\n{tail(self._read_log())}"
                    ) from exc
                time.sleep(0.2)

    def close(self) -> None:
        """Stop the cluster (fast, then immediate), delete its files, retire the watchdog."""
        if self._running:
            res = subprocess.run(
                self._stop_cmd("fast"), cwd=self.tmp, capture_output=True, text=True, timeout=60
            )
            if res.returncode != 0:
                subprocess.run(
                    self._stop_cmd("immediate"), cwd=self.tmp, capture_output=True, timeout=60
                )
            self._running = False
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self._watchdog is not None:
            self._watchdog.terminate()
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
            self._watchdog = None
