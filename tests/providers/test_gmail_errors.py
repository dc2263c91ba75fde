"""Gmail error answers mapped onto the mailwarm error tree (handle-errors guide)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from gmail_fake import Fault, forbidden, google_error, mail_sending_limit, rate_limited, unavailable

import mailwarm as mw
from mailwarm.providers._gmail_errors import (
    HistoryExpired,
    MessageNotFound,
    gmail_error,
    sending_blocked_until,
)

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def answer(fault: Fault) -> httpx.Response:
    return httpx.Response(fault.status, json=fault.body, headers=fault.headers)


def mapped(fault: Fault, method: str = "messages.list", targets: bool = False) -> mw.ProviderError:
    return gmail_error(
        answer(fault),
        method=method,
        targets_message=targets,
        now=NOW,
        provider="gmail",
        account_id="acc",
    )


def error(status: int, message: str, reason: str) -> Fault:
    return Fault(status, google_error(status, message, reason, "X"))


@pytest.mark.parametrize(
    ("fault", "kind", "retryable"),
    [
        (rate_limited("30"), mw.RateLimited, True),
        (rate_limited(None, status=403), mw.RateLimited, True),
        (forbidden("rateLimitExceeded"), mw.RateLimited, True),
        (unavailable(), mw.TransientProviderError, True),
        (error(500, "Backend Error", "backendError"), mw.TransientProviderError, True),
        (error(502, "Bad Gateway", "backendError"), mw.TransientProviderError, True),
        (forbidden("dailyLimitExceeded"), mw.QuotaExhausted, False),
        (mail_sending_limit(NOW), mw.QuotaExhausted, False),
        (forbidden("insufficientPermissions"), mw.AuthExpired, False),
        (forbidden("domainPolicy"), mw.AccountMisconfigured, False),
        (forbidden("forbidden"), mw.PermanentProviderError, False),
        (forbidden("accessNotConfigured"), mw.AccountMisconfigured, False),
        (error(400, "Invalid To header", "invalidArgument"), mw.PermanentProviderError, False),
        (error(401, "Invalid Credentials", "authError"), mw.AuthExpired, False),
        (Fault(404, None), mw.PermanentProviderError, False),
        (Fault(418, None), mw.PermanentProviderError, False),
    ],
)
def test_status_and_reason_decide_the_error(
    fault: Fault, kind: type[mw.ProviderError], retryable: bool
) -> None:
    exc = mapped(fault)
    assert type(exc) is kind
    assert exc.retryable is retryable
    assert (exc.provider, exc.account_id) == ("gmail", "acc")
    assert str(fault.status) in str(exc)


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    date = "Mon, 02 Nov 2026 09:31:15 GMT"
    waits = [mapped(rate_limited(value)) for value in ("30", date, None)]
    assert all(isinstance(w, mw.RateLimited) for w in waits)
    assert [getattr(w, "retry_after", "?") for w in waits] == [30, 75, None]


def test_a_missing_scope_names_the_scope_to_grant() -> None:
    exc = mapped(forbidden("insufficientPermissions", "Insufficient Permission"))
    assert "https://www.googleapis.com/auth/gmail.modify" in str(exc)
    assert "reconnect" in str(exc)


def test_not_found_on_a_message_and_on_history_are_told_apart() -> None:
    gone = error(404, "Requested entity was not found.", "notFound")
    assert type(mapped(gone, "messages.modify", targets=True)) is MessageNotFound
    bad_id = error(400, "Invalid id value", "invalidArgument")
    assert type(mapped(bad_id, "messages.get", targets=True)) is MessageNotFound
    assert type(mapped(gone, "history.list")) is HistoryExpired
    assert isinstance(mapped(gone, "history.list"), mw.PermanentProviderError)


def test_the_mail_sending_limit_says_until_when() -> None:
    until = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
    response = answer(mail_sending_limit(until))
    assert sending_blocked_until(response, NOW) == until
    assert "2026-11-02T14:00+00:00" in str(mapped(mail_sending_limit(until)))
    headers_only = httpx.Response(
        429,
        json=google_error(
            429,
            "User-rate limit exceeded. (Mail sending)",
            "rateLimitExceeded",
            "RESOURCE_EXHAUSTED",
        ),
        headers={"Retry-After": "3600"},
    )
    assert sending_blocked_until(headers_only, NOW) == datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
    assert sending_blocked_until(answer(rate_limited("5")), NOW) is None


def test_an_unreadable_error_body_still_maps_by_status() -> None:
    exc = gmail_error(
        httpx.Response(503, text="<html>oops</html>"),
        method="messages.get",
        targets_message=True,
        now=NOW,
        provider="gmail",
        account_id="acc",
    )
    assert type(exc) is mw.TransientProviderError
    assert "oops" not in str(exc)
