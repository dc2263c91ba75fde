"""Client-side pacing inside a provider's published limits, on the provider's clock.

- :class:`TokenBucket`: a budget that refills continuously (Gmail's 15,000 quota units per
  user per minute, Graph's 10,000 requests per mailbox per 10 minutes).
- :class:`Cooldown`: after a 429/503 with ``Retry-After``, no request to that mailbox goes
  out before the time has passed; a wait longer than the caller accepts raises
  :class:`~mailwarm.RateLimited` so the engine reschedules instead of blocking a worker.
- :class:`RollingCounter`: sends in a rolling window (daily sending caps).
"""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import datetime, timedelta

from mailwarm._clock import Clock
from mailwarm._errors import QuotaExhausted, RateLimited

__all__ = ["Cooldown", "RollingCounter", "TokenBucket"]


class TokenBucket:
    """``capacity`` tokens, refilled at ``capacity / period`` per second."""

    def __init__(self, capacity: float, period: timedelta, clock: Clock) -> None:
        if capacity <= 0 or period <= timedelta(0):
            raise ValueError("capacity and period must be positive")
        self.capacity = capacity
        self.rate = capacity / period.total_seconds()
        self.clock = clock
        self._tokens = capacity
        self._stamp = clock.now()
        self._lock = asyncio.Lock()

    def _refill(self, now: datetime) -> None:
        elapsed = max(0.0, (now - self._stamp).total_seconds())
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._stamp = now

    def available(self) -> float:
        """Tokens available now."""
        self._refill(self.clock.now())
        return self._tokens

    async def acquire(self, cost: float, *, max_wait: float | None = None) -> None:
        """Take ``cost`` tokens, waiting on the clock until they are there. With ``max_wait``,
        a longer wait raises :class:`RateLimited` with the time it would take."""
        cost = min(cost, self.capacity)
        async with self._lock:
            self._refill(self.clock.now())
            missing = cost - self._tokens
            if missing > 0:
                wait = missing / self.rate
                if max_wait is not None and wait > max_wait:
                    raise RateLimited("client-side pacing budget used up", retry_after=wait)
                await self.clock.sleep_until(self.clock.now() + timedelta(seconds=wait))
                self._refill(self.clock.now())
            self._tokens -= cost


class Cooldown:
    """A "not before" time for one mailbox, set from ``Retry-After``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.until: datetime | None = None

    def block_for(self, seconds: float) -> None:
        """No request before ``seconds`` from now (keeps the later of two blocks)."""
        until = self.clock.now() + timedelta(seconds=max(0.0, seconds))
        if self.until is None or until > self.until:
            self.until = until

    def remaining(self) -> float:
        """Seconds until requests may go out again (0 when not blocked)."""
        if self.until is None:
            return 0.0
        return max(0.0, (self.until - self.clock.now()).total_seconds())

    async def wait(self, *, max_wait: float) -> None:
        """Sleep out a short block; raise :class:`RateLimited` for one longer than
        ``max_wait`` seconds."""
        left = self.remaining()
        if left <= 0:
            return
        if left > max_wait:
            raise RateLimited("the provider asked us to wait", retry_after=left)
        await self.clock.sleep_until(self.clock.now() + timedelta(seconds=left))


class RollingCounter:
    """Events in a rolling window, with a limit (a provider's daily sending cap)."""

    def __init__(self, limit: int, window: timedelta, clock: Clock) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: deque[datetime] = deque()

    def _prune(self) -> datetime:
        now = self.clock.now()
        while self._events and self._events[0] <= now - self.window:
            self._events.popleft()
        return now

    def count(self) -> int:
        """Events inside the window now."""
        self._prune()
        return len(self._events)

    def check(self, what: str) -> None:
        """Raise :class:`QuotaExhausted` if another event would pass the limit."""
        self._prune()
        if len(self._events) >= self.limit:
            raise QuotaExhausted(
                f"{what}: {self.limit} in a rolling {self.window} reached; "
                "the account waits for its window to move on"
            )

    def add(self) -> None:
        """Record one event now."""
        self._events.append(self._prune())
