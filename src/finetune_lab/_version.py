"""The installed distribution's version, read once (the User-Agent and `/healthz` report it)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("finetune-lab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
