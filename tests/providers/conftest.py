"""Shared fixtures for provider tests: a virtual clock, a memory network and its mailboxes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import mailwarm as mw
from mailwarm.providers.memory import MemoryNetwork

START = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> mw.VirtualClock:
    return mw.VirtualClock(START)


@pytest.fixture
def network(clock: mw.VirtualClock) -> MemoryNetwork:
    return MemoryNetwork(clock)


@pytest.fixture
def mailboxes(network: MemoryNetwork) -> list[mw.EmailAccount]:
    """Three accounts of three organisations, with mailboxes on ``network``."""
    accounts = [
        mw.EmailAccount(id="alice", address="alice@acme.com", provider="memory"),
        mw.EmailAccount(id="bob", address="bob@globex.io", provider="memory"),
        mw.EmailAccount(id="carol", address="carol@initech.net", provider="memory"),
    ]
    network.add_accounts(accounts)
    return accounts
