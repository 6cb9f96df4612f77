"""Run the API server inside this process, in a thread: for the demo and for embedding."""

from __future__ import annotations

import gc
import socket
import threading
import time

import uvicorn

from finetune_lab.server.app import create_app
from finetune_lab.server.settings import Settings

# Open SSE streams never finish by themselves: give requests this long, then stop anyway.
SHUTDOWN_GRACE_S = 3


def tune_gc_for_serving() -> None:
    """Fewer, cheaper garbage collections for a long-lived server process.

    Ingest allocates ~10^4 short-lived objects per batch: with the default thresholds the
    collector ran ~10 times per batch and full collections over the import-time heap took
    up to 80 ms. Freezing what exists after start-up keeps it out of every later collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class BackgroundServer:
    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 8484) -> None:
        self.host = host
        self.port = port if port and port_is_free(host, port) else free_port(host)
        config = uvicorn.Config(
            create_app(settings),
            host=host,
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, name="finetune-lab-server", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
