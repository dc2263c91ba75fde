"""The exception tree and the injectable clocks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailwarm._clock import Clock, SystemClock, VirtualClock
from mailwarm._errors import (
    AuthExpired,
    ConfigurationError,
    MailwarmError,
    MissingExtra,
    PermanentProviderError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
    UnsupportedAction,
)

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

# --- errors ------------------------------------------------------------------------------


def test_missing_extra_message_and_types() -> None:
    err = MissingExtra("aiosmtplib", extra="smtp")
    assert 'pip install "mailwarm[smtp]"' in str(err)
    assert "aiosmtplib" in str(err)
    assert err.package == "aiosmtplib"
    assert err.extra == "smtp"
    assert isinstance(err, ImportError)
    assert isinstance(err, ConfigurationError)
    assert isinstance(err, MailwarmError)


def test_missing_extra_caught_as_import_error() -> None:
    with pytest.raises(ImportError, match=r"mailwarm\[cli\]"):
        raise MissingExtra("typer", extra="cli")


def test_configuration_error_is_value_error() -> None:
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(ConfigurationError, MailwarmError)


def test_rate_limited_retryable_with_retry_after() -> None:
    err = RateLimited("slow down", retry_after=42.5, provider="gmail", account_id="acc-1")
    assert err.retryable is True
    assert err.retry_after == 42.5
    assert err.provider == "gmail"
    assert err.account_id == "acc-1"
    assert str(err) == "slow down"
    assert RateLimited("x").retry_after is None


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (ProviderError, False),
        (AuthExpired, False),
        (RateLimited, True),
        (QuotaExhausted, False),
        (TransientProviderError, True),
        (PermanentProviderError, False),
        (UnsupportedAction, False),
    ],
)
def test_provider_error_hierarchy(cls: type[ProviderError], retryable: bool) -> None:
    err = cls("boom", provider="smtp", account_id="a")
    assert isinstance(err, ProviderError)
    assert isinstance(err, MailwarmError)
    assert not isinstance(err, ConfigurationError)
    assert err.retryable is retryable
    assert err.provider == "smtp"
    assert err.account_id == "a"


def test_provider_errors_are_not_configuration_errors() -> None:
    assert not issubclass(ProviderError, ValueError)
    assert not issubclass(ConfigurationError, ProviderError)


# --- clocks ------------------------------------------------------------------------------


def test_virtual_clock_rejects_naive_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        VirtualClock(datetime(2026, 1, 1, 8, 0))


def test_virtual_clock_now_is_utc() -> None:
    clock = VirtualClock(datetime(2026, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(0)


def test_virtual_clock_never_goes_backwards() -> None:
    clock = VirtualClock(START)
    clock.advance_to(START + timedelta(hours=3))
    clock.advance_to(START + timedelta(hours=1))
    assert clock.now() == START + timedelta(hours=3)
    clock.advance_to(START - timedelta(days=1))
    assert clock.now() == START + timedelta(hours=3)


def test_virtual_clock_does_not_move_by_itself() -> None:
    clock = VirtualClock(START)
    assert clock.now() == clock.now() == START


async def test_virtual_clock_sleep_until_jumps() -> None:
    clock = VirtualClock(START)
    target = START + timedelta(days=30)
    loop = asyncio.get_running_loop()
    before = loop.time()
    await clock.sleep_until(target)
    assert clock.now() == target
    assert loop.time() - before < 1.0  # no real waiting
    await clock.sleep_until(START)  # the past: returns at once, no rewind
    assert clock.now() == target


async def test_virtual_clock_sleep_until_yields_to_loop() -> None:
    clock = VirtualClock(START)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await clock.sleep_until(START + timedelta(seconds=1))
    assert ran == ["other"]
    await task


async def test_system_clock_past_deadline_returns_at_once() -> None:
    clock = SystemClock()
    now = clock.now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    await clock.sleep_until(now - timedelta(hours=1))
    assert clock.now() >= now


def test_clocks_satisfy_protocol() -> None:
    assert isinstance(VirtualClock(START), Clock)
    assert isinstance(SystemClock(), Clock)
