"""Injectable time: the engine never reads the wall clock directly.

``SystemClock`` is real time; ``VirtualClock`` jumps straight to the next due moment, so
weeks of warmup run in seconds in the lab and in tests (the idea of trio's MockClock).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Where the engine gets the time from: ``now()`` is always timezone-aware UTC."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once ``now() >= when`` (at once if that moment has passed)."""
        ...


class SystemClock:
    """Real time from the operating system."""

    def now(self) -> datetime:
        """The current UTC instant."""
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        """Sleep in real time until ``when``."""
        delay = (when - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """A clock that only moves when told to: ``sleep_until`` jumps instead of waiting."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(
                "VirtualClock needs a timezone-aware start, e.g. datetime(..., tzinfo=UTC)"
            )
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        """The current virtual instant."""
        return self._now

    def advance_to(self, when: datetime) -> None:
        """Move the clock forward to ``when``; it never moves backwards."""
        when = when.astimezone(UTC)
        if when > self._now:
            self._now = when

    async def sleep_until(self, when: datetime) -> None:
        """Jump to ``when`` and yield to the event loop once."""
        self.advance_to(when)
        await asyncio.sleep(0)
