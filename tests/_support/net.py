"""Small networking helpers shared by the fixtures."""

from __future__ import annotations

import socket


def free_port() -> int:
    """Return a loopback TCP port that is free right now (the OS picks it, so no collisions)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(text: str, lines: int = 60) -> str:
    """Last ``lines`` lines of ``text``: enough log to explain a failure, short enough to read."""
    return "\n".join(text.splitlines()[-lines:])
