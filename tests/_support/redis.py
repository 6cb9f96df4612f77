"""Redis for tests: Debian's `redis-server` on a free loopback port, in a temp dir.

Like the PostgreSQL cluster: no persistence, nothing outside the temp dir, and a detached
watchdog that stops it if the test process disappears without cleaning up.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .net import free_port, tail

#: Env var overriding which binary to run.
BIN_ENV = "FINETUNE_LAB_TEST_REDIS_SERVER"
DEFAULT_BIN = "redis-server"

_WATCHDOG = r"""
import os, shutil, signal, sys, time
parent, pid, tmp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
while os.getppid() == parent:
    time.sleep(1)
try:
    os.kill(pid, signal.SIGKILL)
except OSError:
    pass
shutil.rmtree(tmp, ignore_errors=True)
"""


class RedisUnavailable(RuntimeError):
    """`redis-server` is not installed (callers decide between skip and fail)."""


class RedisServer:
    """A private, throwaway Redis; `url` is what FINETUNE_LAB_RATE_LIMIT_STORAGE takes."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which(os.environ.get(BIN_ENV, DEFAULT_BIN))
        if binary is None:
            raise RedisUnavailable("redis-server not found")
        self.binary = binary
        self.tmp = Path(tempfile.mkdtemp(prefix="ftl-redis-"))
        self.log_path = self.tmp / "redis.log"
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port)."""
        # fmt: off
        argv = [
            self.binary,
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.tmp),
            "--logfile", str(self.log_path), "--daemonize", "no",
        ]
        # fmt: on
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._start_watchdog()
        self._wait_ready()

    def _start_watchdog(self) -> None:
        assert self._proc is not None
        self._stop_watchdog()
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self._proc.pid), str(self.tmp)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait_ready(self, timeout: float = 30) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{tail(self._read_log())}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server not answering:\n{tail(self._read_log())}")
            time.sleep(0.05)

    def _read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server but keep the port for `start()` (outage tests)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.terminate()
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
            self._watchdog = None

    def close(self) -> None:
        self.stop()
        self._stop_watchdog()
        shutil.rmtree(self.tmp, ignore_errors=True)
