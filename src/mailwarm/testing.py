"""pytest fixtures for code that embeds mailwarm (registered as the ``mailwarm`` pytest plugin).

- ``virtual_clock``: a :class:`~mailwarm.VirtualClock` at Monday 2026-01-05 09:00 UTC.
- ``memory_network``: a :class:`~mailwarm.providers.memory.MemoryNetwork` on that clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailwarm._clock import VirtualClock
from mailwarm.providers.memory import MemoryNetwork

__all__ = ["memory_network", "virtual_clock"]


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A virtual clock that only moves when the engine sleeps on it."""
    return VirtualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def memory_network(virtual_clock: VirtualClock) -> MemoryNetwork:
    """An empty in-memory mail network on ``virtual_clock``."""
    return MemoryNetwork(virtual_clock)
