"""Retries for provider calls: tenacity, honouring Retry-After, full-jitter backoff otherwise.

Only errors whose ``retryable`` is true are retried, and only while the wait they ask for is
short: a ``RateLimited`` with a long ``Retry-After`` goes straight back to the engine, which
reschedules the task for after it expires (never a request before then). Waiting uses the
provider's :class:`~mailwarm.Clock`, so tests on a virtual clock do not really sleep.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from mailwarm._clock import Clock
from mailwarm._errors import ProviderError, RateLimited

__all__ = ["RetryPolicy", "parse_retry_after", "with_retries"]

T = TypeVar("T")


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date
    (RFC 9110 section 10.2.3). ``None`` when absent or unreadable; never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class RetryPolicy:
    """How many attempts, and how long one wait may be before the engine takes over.

    ``attempts``: total tries of one call. ``base``/``cap``: full-jitter exponential backoff
    (a uniform wait in ``[0, min(cap, base * 2**n)]``, the AWS architecture blog's "full
    jitter"). ``max_wait``: a longer requested wait is not slept through inline.
    """

    def __init__(
        self,
        *,
        attempts: int = 4,
        base: float = 1.0,
        cap: float = 30.0,
        max_wait: float = 60.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self.max_wait = max_wait

    def wait_for(self, error: BaseException | None, attempt: int, rng: random.Random) -> float:
        """The wait before retry number ``attempt`` (1-based) after ``error``."""
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float):
            return float(retry_after)
        return rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


NO_RETRY = RetryPolicy(attempts=1)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    clock: Clock,
    rng: random.Random,
    policy: RetryPolicy,
    retry_if: Callable[[BaseException], bool] | None = None,
) -> T:
    """Run ``call`` and retry it on retryable :class:`ProviderError`\\ s, per ``policy``.

    ``retry_if`` narrows further (a send whose outcome is unknown must not be retried).
    The last error is re-raised unchanged, so callers see the typed error.
    """

    def retryable(exc: BaseException) -> bool:
        if not isinstance(exc, ProviderError) or not exc.retryable:
            return False
        if retry_if is not None and not retry_if(exc):
            return False
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        return retry_after is None or retry_after <= policy.max_wait

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        return policy.wait_for(error, state.attempt_number, rng)

    async def sleep(seconds: float) -> None:
        await clock.sleep_until(clock.now() + timedelta(seconds=seconds))

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        retry=retry_if_exception(retryable),
        sleep=sleep,
        reraise=True,
    )
    return await retrying(call)
