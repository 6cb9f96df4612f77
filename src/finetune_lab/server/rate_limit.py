"""Per-credential request rate limits: 429 with `Retry-After` instead of an overloaded server.

Limits count requests per API key (its session tokens share the key's budget) and per job
token, in a moving window kept in this process's memory: with several server processes behind
a load balancer each process enforces the limit on the requests it sees.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from finetune_lab.server.errors import APIError

DISABLED = {"", "0", "off", "none", "unlimited"}


class RateLimiter:
    """`spec` in the `limits` notation, e.g. "1200/minute" or "50/second;1200/minute"."""

    def __init__(self, spec: str) -> None:
        self.spec = spec.strip()
        self.items: list[RateLimitItem] = (
            [] if self.spec.lower() in DISABLED else list(parse_many(self.spec))
        )
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    @property
    def enabled(self) -> bool:
        return bool(self.items)

    def check(self, bucket: str) -> None:
        """Count one request against `bucket`; raise 429 once any window is full."""
        for item in self.items:
            if not self._limiter.hit(item, bucket):
                stats = self._limiter.get_window_stats(item, bucket)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                raise APIError(
                    429,
                    f"rate limit exceeded ({item.amount} per {item.get_expiry()} s); "
                    f"retry in {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )
