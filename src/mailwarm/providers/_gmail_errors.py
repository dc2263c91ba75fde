"""Gmail API error responses mapped onto the mailwarm error tree.

Per https://developers.google.com/gmail/api/guides/handle-errors: 429 and 5xx, and 403 with
reason ``rateLimitExceeded``/``userRateLimitExceeded``, are worth retrying with backoff; 403
``dailyLimitExceeded`` and the 429 "(Mail sending)" user-rate limit mean a quota is used up for
hours; other 403s are permissions that retrying does not fix. Messages carry the status,
Google's reason and Google's own (secret-free) message, never request data.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from mailwarm._errors import (
    AccountMisconfigured,
    AuthExpired,
    PermanentProviderError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
)
from mailwarm.providers._retry import parse_retry_after

__all__ = [
    "HistoryExpired",
    "MessageNotFound",
    "error_reasons",
    "gmail_error",
    "sending_blocked_until",
]

_RETRYABLE_403 = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_QUOTA_403 = frozenset({"dailyLimitExceeded", "quotaExceeded"})
_SCOPE_403 = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})
_RETRY_AT = re.compile(r"Retry after (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)")


class MessageNotFound(PermanentProviderError):
    """The Gmail id names no message in this mailbox (404, or 400 "Invalid id value")."""


class HistoryExpired(PermanentProviderError):
    """``history.list`` answered 404: the start history id is too old; sync in full."""


def _error_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def error_reasons(response: httpx.Response) -> frozenset[str]:
    """Reasons from ``error.errors[].reason`` and ``error.details[].reason`` (ErrorInfo)."""
    error = _error_object(response)
    reasons: set[str] = set()
    for key in ("errors", "details"):
        items = error.get(key)
        if isinstance(items, list):
            reasons.update(
                item["reason"]
                for item in items
                if isinstance(item, dict) and isinstance(item.get("reason"), str)
            )
    return frozenset(reasons)


def _message(response: httpx.Response) -> str:
    message = _error_object(response).get("message")
    return message[:200] if isinstance(message, str) else ""


def _is_mail_sending_limit(response: httpx.Response) -> bool:
    # The per-user sending limit is a 429 "User-rate limit exceeded. Retry after <time>
    # (Mail sending)" and can last hours: not something to retry inline.
    return "(Mail sending)" in _message(response)


def sending_blocked_until(response: httpx.Response, now: datetime) -> datetime | None:
    """When Gmail lets this user send again, from a "(Mail sending)" limit answer."""
    if not _is_mail_sending_limit(response):
        return None
    match = _RETRY_AT.search(_message(response))
    if match is not None:
        try:
            return datetime.fromisoformat(match[1].replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            pass
    seconds = parse_retry_after(response.headers.get("Retry-After"), now)
    return None if seconds is None else now + timedelta(seconds=seconds)


def gmail_error(
    response: httpx.Response,
    *,
    method: str,
    targets_message: bool,
    now: datetime,
    provider: str,
    account_id: str,
) -> ProviderError:
    """The :class:`ProviderError` for a non-2xx answer to ``method`` (e.g. ``messages.get``)."""
    status = response.status_code
    reasons = error_reasons(response)
    said = _message(response)
    what = f"Gmail {method} failed ({status}{' ' + ', '.join(sorted(reasons)) if reasons else ''})"
    if said:
        what = f"{what}: {said}"
    where = {"provider": provider, "account_id": account_id}
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)

    if status == 401:
        return AuthExpired(f"{what}; reconnect the account", **where)
    if status in (403, 429) and _is_mail_sending_limit(response):
        until = sending_blocked_until(response, now)
        when = f" until {until.isoformat(timespec='minutes')}" if until else ""
        return QuotaExhausted(f"{what}; Gmail blocks sending for this user{when}", **where)
    if status == 429 or (status == 403 and reasons & _RETRYABLE_403):
        return RateLimited(what, retry_after=retry_after, **where)
    if status == 403 and reasons & _QUOTA_403:
        return QuotaExhausted(f"{what}; the daily quota is used up", **where)
    if status == 403 and reasons & _SCOPE_403:
        # The token works but lacks a scope: only a new consent with the right scope helps,
        # so it is an authorisation problem for the user, not a failure to retry.
        return AuthExpired(
            f"{what}; the account was connected without the "
            "https://www.googleapis.com/auth/gmail.modify scope: reconnect it and grant "
            "access to read, send and organise mail",
            **where,
        )
    if status == 403 and "domainPolicy" in reasons:
        return AccountMisconfigured(
            f"{what}; the Google Workspace administrator does not allow this app to use the "
            "Gmail API for the domain",
            **where,
        )
    if status == 403 and reasons & {"accessNotConfigured", "SERVICE_DISABLED"}:
        return AccountMisconfigured(
            f"{what}; enable the Gmail API in the OAuth client's Google Cloud project", **where
        )
    if method == "history.list" and status == 404:
        return HistoryExpired(what, **where)
    if targets_message and (status == 404 or (status == 400 and "Invalid id value" in said)):
        return MessageNotFound(what, **where)
    if status >= 500:
        return TransientProviderError(what, **where)
    return PermanentProviderError(what, **where)
