"""Per-key request rate limits: 429 with `Retry-After` instead of an overloaded server.

Limits count requests per API key: its session tokens and its jobs' tokens spend the same
budget. The moving windows live in this process's memory by default (one process), or in Redis
(`FINETUNE_LAB_RATE_LIMIT_STORAGE=redis://...`) so that every server process behind a load
balancer spends one shared budget.

When Redis cannot be reached the server fails open to its own in-memory windows (limits then
hold per process, as without Redis) and logs one warning per outage; it tries Redis again after
`SHARED_RETRY_S`. A rate-limit store is a guard, not the data: losing it must not take the API
down, and the per-process limit still bounds what a single key can do.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from finetune_lab.server.errors import APIError

log = logging.getLogger("finetune_lab.server.rate_limit")

DISABLED = {"", "0", "off", "none", "unlimited"}
MEMORY = "memory://"
SHARED_SCHEMES = ("redis", "rediss", "redis+unix")
# A request never waits long on an unreachable Redis; an outage is re-probed this often.
REDIS_TIMEOUT_S = 0.5
SHARED_RETRY_S = 5.0
KEY_PREFIX = "finetune_lab"


def redact(uri: str) -> str:
    """The storage URI without its password, for logs and error messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _shared_limiter(uri: str) -> MovingWindowRateLimiter | None:
    scheme = urlsplit(uri).scheme.lower()
    if uri.strip().lower() == MEMORY:
        return None
    if scheme not in SHARED_SCHEMES:
        raise ValueError(
            f"unsupported rate-limit storage {redact(uri)!r}: use memory:// or redis://host:port/db"
        )
    storage = storage_from_string(
        uri,
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
    )
    return MovingWindowRateLimiter(storage)


class RateLimiter:
    """`spec` in the `limits` notation, e.g. "1200/minute" or "50/second;1200/minute";
    `storage` is memory:// (this process) or a redis:// URL (shared by every process)."""

    def __init__(self, spec: str, storage: str = MEMORY) -> None:
        self.spec = spec.strip()
        self.items: list[RateLimitItem] = (
            [] if self.spec.lower() in DISABLED else list(parse_many(self.spec))
        )
        self.storage = storage.strip() or MEMORY
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared = _shared_limiter(self.storage) if self.items else None
        self._shared_down_until = 0.0  # monotonic time before which the shared store is skipped
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.items)

    def check(self, bucket: str) -> None:
        """Count one request against `bucket`; raise 429 once any window is full."""
        for item in self.items:
            limiter = self._hit(item, bucket)
            if limiter is not None:
                retry_after = self._retry_after(limiter, item, bucket)
                raise APIError(
                    429,
                    f"rate limit exceeded ({item.amount} per {item.get_expiry()} s); "
                    f"retry in {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )

    @staticmethod
    def _retry_after(limiter: MovingWindowRateLimiter, item: RateLimitItem, bucket: str) -> int:
        try:
            reset_time = limiter.get_window_stats(item, bucket).reset_time
        except StorageError:  # the store went away between the hit and this read
            return int(item.get_expiry())
        return max(1, math.ceil(reset_time - time.time()))

    def _hit(self, item: RateLimitItem, bucket: str) -> MovingWindowRateLimiter | None:
        """Spend one request; the limiter that refused it, or None when it was allowed."""
        shared = self._shared
        if shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                allowed = shared.hit(item, bucket)
            except StorageError as exc:
                self._shared_failed(exc)
            else:
                self._shared_ok()
                return None if allowed else shared
        return None if self._local.hit(item, bucket) else self._local

    def _shared_failed(self, exc: StorageError) -> None:
        with self._lock:
            first = self._shared_down_until == 0.0
            self._shared_down_until = time.monotonic() + SHARED_RETRY_S
        if first:
            log.warning(
                "rate-limit storage %s is unreachable (%s): limits are counted per process "
                "until it answers again",
                redact(self.storage),
                exc.storage_error,
            )

    def _shared_ok(self) -> None:
        if self._shared_down_until == 0.0:
            return
        with self._lock:
            self._shared_down_until = 0.0
        log.warning("rate-limit storage %s answers again: limits are shared", redact(self.storage))
