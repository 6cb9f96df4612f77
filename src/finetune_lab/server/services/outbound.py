"""Fair shares of outbound model calls: per user, per target, and in all, per server process.

Why: one user's burst of predict calls to a slow endpoint held every connection of the shared
HTTP client, and another user's call to a fast model waited behind it. Every model call (predict
or batch prompt) now takes one slot of each of its keys before it starts: its user's, its
target's (the upstream `scheme://host:port`, or the local checkpoint) and the process-wide one.
A predict call that finds no slot waits at most `wait_s`, then gets 429 (its user is at its
limit) or 503 (the target or the process is full), both with `Retry-After`. Batch prompts wait
for their slot as long as it takes: they hold no other slot meanwhile, so they cannot deadlock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from finetune_lab.server.errors import APIError

RETRY_AFTER_S = 1


@dataclass(frozen=True)
class OutboundLimits:
    per_user: int = 16
    per_target: int = 64
    total: int = 256
    wait_s: float = 1.0


def target_of(model: Any) -> str:
    """The key a model's calls share with every model at the same place."""
    if model.kind == "local":
        return f"local:{model.path}"
    try:
        parts = urlsplit(model.base_url or "")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"
    except ValueError:
        return "url:invalid"


@dataclass
class _Waiter:
    keys: tuple[str, ...]
    future: asyncio.Future[None]


class Slot:
    """One admitted call; `release` gives its slots back (only the first call counts)."""

    def __init__(self, gate: OutboundGate, keys: tuple[str, ...]) -> None:
        self._gate = gate
        self._keys = keys
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._gate._release(self._keys)


class OutboundGate:
    """Counting slots under several keys at once; a call takes all of its keys or waits."""

    def __init__(self, limits: OutboundLimits) -> None:
        self.limits = limits
        self._held: dict[str, int] = {}
        self._waiters: deque[_Waiter] = deque()

    def in_flight(self, key: str) -> int:
        return self._held.get(key, 0)

    def _limit(self, key: str) -> int:
        kind = key.split(":", 1)[0]
        if kind == "user":
            return self.limits.per_user
        if kind == "target":
            return self.limits.per_target
        return self.limits.total

    def _fits(self, keys: tuple[str, ...]) -> bool:
        return all(self._held.get(k, 0) < self._limit(k) for k in keys)

    def _take(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._held[key] = self._held.get(key, 0) + 1

    def _release(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)
        self._wake()

    def _wake(self) -> None:
        """Admit waiters in arrival order, each as soon as all of its keys have room."""
        still: deque[_Waiter] = deque()
        for waiter in self._waiters:
            if waiter.future.done():
                continue
            if self._fits(waiter.keys):
                self._take(waiter.keys)
                waiter.future.set_result(None)
            else:
                still.append(waiter)
        self._waiters = still

    async def acquire(self, user_id: int, target: str, *, wait_s: float | None) -> Slot:
        """A slot for one call; `wait_s=None` waits as long as it takes (batch prompts)."""
        keys = (f"user:{user_id}", f"target:{target}", "all")
        # Waiters that fit were admitted when the last slot was released: nobody is overtaken.
        if self._fits(keys):
            self._take(keys)
            return Slot(self, keys)
        if wait_s is not None and wait_s <= 0:
            raise self._refusal(keys, target)
        waiter = _Waiter(keys, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            if wait_s is None:
                await waiter.future
            else:
                await asyncio.wait_for(asyncio.shield(waiter.future), wait_s)
        except BaseException as exc:
            granted = waiter.future.done() and not waiter.future.cancelled()
            if granted and isinstance(exc, TimeoutError):
                return Slot(self, keys)  # admitted at the very moment the wait ran out
            if granted:
                self._release(keys)
            else:
                waiter.future.cancel()
            if isinstance(exc, TimeoutError):
                raise self._refusal(keys, target) from None
            raise
        return Slot(self, keys)

    def _refusal(self, keys: tuple[str, ...], target: str) -> APIError:
        user_key = keys[0]
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        if self._held.get(user_key, 0) >= self.limits.per_user:
            return APIError(
                429,
                f"you already have {self.limits.per_user} model calls in flight (the most one "
                "user may have on this server process); retry when one has finished",
                type="concurrency_limited",
                details={"limit": "per_user", "max_in_flight": self.limits.per_user},
                headers=headers,
            )
        if self._held.get(keys[1], 0) >= self.limits.per_target:
            limit, most = "per_target", self.limits.per_target
            message = f"this model's endpoint already has {most} calls in flight from this server"
        else:
            limit, most = "total", self.limits.total
            message = f"this server process already has {most} model calls in flight"
        return APIError(
            503,
            f"{message}; retry shortly",
            type="outbound_busy",
            details={"limit": limit, "max_in_flight": most},
            headers=headers,
        )
