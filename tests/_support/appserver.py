"""The FineTune Lab server as a real subprocess (``python -m finetune_lab serve``).

Tests go through real HTTP and the real CLI, so startup, migrations, key creation and both
database backends are exercised exactly as a user would run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import httpx

from .net import free_port, tail

Backend = Literal["sqlite", "postgresql"]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class ServerStartError(RuntimeError):
    """The server died or never became healthy; the message carries its log tail."""


def sqlite_url(home: Path) -> str:
    """SQLite database URL inside the server's home dir."""
    return f"sqlite:///{home / 'finetune-lab.db'}"


@dataclass
class ServerHandle:
    """One running server process bound to one database.

    ``restart()`` keeps port and database, so tests can check what survives a restart.
    """

    backend: Backend
    database_url: str
    home: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        """Root URL of the server, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Combined stdout/stderr of every run of this server (restarts append)."""
        return self.home / "server.log"

    @property
    def pid(self) -> int | None:
        """PID of the running process, if any."""
        return self._proc.pid if self._proc is not None else None

    def env(self) -> dict[str, str]:
        """Environment for the server and CLI: our home dir, no stray settings from the caller."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNE_LAB_")}
        env["FINETUNE_LAB_HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the server log (for failure messages)."""
        try:
            return tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return "<no server log>"

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the process and block until ``GET /healthz`` answers 200."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self.home.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file.write(f"--- starting on port {self.port} ---\n".encode())
        self._log_file.flush()
        # fmt: off
        argv = [
            sys.executable, "-m", "finetune_lab", "serve",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--database-url", self.database_url,
            "--parent-pid", str(os.getpid()),
        ]
        # fmt: on
        self._proc = subprocess.Popen(
            argv,
            env=self.env(),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    self._close_log()
                    self._proc = None
                    raise ServerStartError(
                        f"{self.backend} server exited with code {code} before it was healthy.\n"
                        f"--- server log tail ({self.log_path}) ---\n{self.log_tail()}"
                    )
                try:
                    resp = client.get("/healthz")
                    if resp.status_code == 200:
                        return
                    last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    self.stop()
                    raise ServerStartError(
                        f"{self.backend} server not healthy after {START_TIMEOUT_S:.0f}s "
                        f"(last: {last}).\n"
                        f"--- server log tail ({self.log_path}) ---\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def stop(self) -> None:
        """Terminate, give it 10 s to shut down cleanly, then kill."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        self._close_log()

    def restart(self) -> None:
        """Stop and start again on the same port and database (durability tests)."""
        self.stop()
        self.start()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- conveniences for tests -------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``python -m finetune_lab ARGS`` with this server's environment."""
        return subprocess.run(
            [sys.executable, "-m", "finetune_lab", *args],
            env=self.env(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def create_key(self, user: str, scopes: str = "all", name: str | None = None) -> str:
        """Create an API key through the real CLI and return the secret (``flk_...``)."""
        name = name or f"{user}-{uuid.uuid4().hex[:8]}"
        # fmt: off
        args = [
            "keys", "create",
            "--user", user,
            "--name", name,
            "--scopes", scopes,
            "--database-url", self.database_url,
            "--json",
        ]
        # fmt: on
        res = self.cli(*args)
        if res.returncode != 0:
            raise RuntimeError(
                f"`keys create` failed ({res.returncode}):\n"
                f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
            )
        return str(_parse_json_output(res.stdout)["key"])

    def client(self, key: str | None = None) -> httpx.Client:
        """An httpx client for this server, authenticated with ``key`` when given."""
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0)


def _parse_json_output(stdout: str) -> dict[str, object]:
    """The JSON object a ``--json`` command printed (tolerating log lines around it)."""
    text = stdout.strip()
    candidates = [text, *reversed([ln.strip() for ln in text.splitlines()])]
    for candidate in candidates:
        if candidate.startswith("{"):
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    raise RuntimeError(f"no JSON object in command output:\n{stdout}")
