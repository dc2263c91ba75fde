"""Gmail faults on the wire: Retry-After, 5xx storms, quotas, pacing and lost send answers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime

import gmail_fake
import pytest
import respx
from gmail_fake import Fault, GmailFake, forbidden, mail_sending_limit, outgoing, rate_limited

import mailwarm as mw
from mailwarm.providers._retry import RetryPolicy
from mailwarm.providers.gmail import GmailProvider, GmailSettings

RETRY = RetryPolicy(attempts=4, base=1.0, cap=30.0, max_wait=60.0)


@pytest.fixture
def gmail(respx_mock: respx.MockRouter, clock: mw.VirtualClock) -> Iterator[GmailFake]:
    yield from gmail_fake.serve(respx_mock, clock)


@pytest.fixture
def alice(gmail: GmailFake) -> mw.EmailAccount:
    gmail.add_user("alice@gmail.com")
    return mw.EmailAccount(id="alice", address="alice@gmail.com", provider="gmail")


@pytest.fixture
def bob(gmail: GmailFake) -> mw.EmailAccount:
    gmail.add_user("bob@globex.io")
    return mw.EmailAccount(id="bob", address="bob@globex.io", provider="gmail")


@pytest.fixture
def provider(gmail: GmailFake, alice: mw.EmailAccount) -> GmailProvider:
    return gmail_fake.provider(gmail, alice, retry=RETRY)


def gaps(gmail: GmailFake, method: str) -> list[float]:
    times = [call.at for call in gmail.calls(method)]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


# -- Retry-After ---------------------------------------------------------------------------------


async def test_429_retry_after_seconds_is_waited_out_exactly(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount
) -> None:
    gmail.fail_next(alice.address, "messages.list", rate_limited("20"))
    assert await provider.locate(["<a@example.com>"]) == {}
    assert [c.status for c in gmail.calls("messages.list")] == [429, 200]
    assert gaps(gmail, "messages.list") == [20.0]


async def test_429_retry_after_http_date_is_waited_out_exactly(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    when = format_datetime(clock.now() + timedelta(seconds=45), usegmt=True)
    gmail.fail_next(alice.address, "messages.list", rate_limited(when))
    await provider.locate(["<a@example.com>"])
    assert gaps(gmail, "messages.list") == [45.0]


async def test_403_user_rate_limit_is_retried_after_its_retry_after(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount
) -> None:
    gmail.fail_next(alice.address, "users.getProfile", rate_limited("7", status=403))
    assert (await provider.api.profile())["emailAddress"] == alice.address
    assert gaps(gmail, "users.getProfile") == [7.0]


async def test_a_long_retry_after_goes_back_to_the_engine_and_blocks_the_mailbox(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    gmail.fail_next(alice.address, "messages.list", rate_limited("600"))
    with pytest.raises(mw.RateLimited) as first:
        await provider.locate(["<a@example.com>"])
    assert first.value.retry_after == 600
    assert (first.value.provider, first.value.account_id) == ("gmail", "alice")
    clock.advance_to(clock.now() + timedelta(seconds=100))
    with pytest.raises(mw.RateLimited) as second:  # no request before Retry-After has passed
        await provider.mark_read(mw.MessageRef("<a@example.com>", provider_id="18c5f2a3b4d50000"))
    assert second.value.retry_after == pytest.approx(500)
    assert len(gmail.seen) == 1
    clock.advance_to(clock.now() + timedelta(seconds=500))
    assert await provider.locate(["<a@example.com>"]) == {}


# -- 5xx -------------------------------------------------------------------------------------------


async def test_a_503_storm_is_retried_a_bounded_number_of_times_with_jittered_backoff(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    start = clock.now()
    gmail.fail_next(alice.address, "messages.list", gmail_fake.unavailable(), times=10)
    with pytest.raises(mw.TransientProviderError) as excinfo:
        await provider.list_recent(start - timedelta(days=1))
    assert excinfo.value.retryable
    assert "503" in str(excinfo.value)
    assert len(gmail.calls("messages.list")) == RETRY.attempts
    waits = gaps(gmail, "messages.list")
    assert all(0 <= w <= 2**n for n, w in enumerate(waits))  # full jitter under 1, 2, 4 s
    assert clock.now() - start == timedelta(seconds=sum(waits))


async def test_a_503_with_retry_after_is_not_retried_earlier(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount
) -> None:
    gmail.fail_next(alice.address, "labels.list", gmail_fake.unavailable("12"))
    await provider.api.labels()
    assert gaps(gmail, "labels.list")[0] >= 12


# -- quotas ----------------------------------------------------------------------------------------


async def test_daily_limit_exceeded_is_quota_exhausted_without_a_retry(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    gmail.fail_next(alice.address, "messages.list", forbidden("dailyLimitExceeded"), times=5)
    with pytest.raises(mw.QuotaExhausted) as excinfo:
        await provider.locate(["<a@example.com>"])
    assert excinfo.value.retryable is False
    assert len(gmail.calls("messages.list")) == 1


async def test_the_mail_sending_limit_blocks_sends_until_gmail_allows_them(
    gmail: GmailFake,
    provider: GmailProvider,
    alice: mw.EmailAccount,
    bob: mw.EmailAccount,
    clock: mw.VirtualClock,
) -> None:
    until = clock.now() + timedelta(hours=3)
    gmail.fail_next(alice.address, "messages.send", mail_sending_limit(until))
    with pytest.raises(mw.QuotaExhausted) as excinfo:
        await provider.send(outgoing(clock, alice, bob.address))
    assert until.isoformat(timespec="minutes") in str(excinfo.value)
    with pytest.raises(mw.QuotaExhausted):  # known locally: no request
        await provider.send(outgoing(clock, alice, bob.address))
    assert len(gmail.calls("messages.send")) == 1
    clock.advance_to(until)
    await provider.send(outgoing(clock, alice, bob.address))
    assert [c.status for c in gmail.calls("messages.send")] == [429, 200]


async def test_the_local_daily_cap_refuses_sends_before_gmail_does(
    gmail: GmailFake, alice: mw.EmailAccount, bob: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    provider = gmail_fake.provider(gmail, alice, settings=GmailSettings(daily_send_limit=3))
    assert provider.daily_send_limit == 3
    for _ in range(3):
        await provider.send(outgoing(clock, alice, bob.address))
    with pytest.raises(mw.QuotaExhausted) as excinfo:
        await provider.send(outgoing(clock, alice, bob.address))
    assert (excinfo.value.provider, excinfo.value.account_id) == ("gmail", "alice")
    assert len(gmail.calls("messages.send")) == 3
    clock.advance_to(clock.now() + timedelta(hours=24))  # the rolling window moves on
    await provider.send(outgoing(clock, alice, bob.address))
    assert len(gmail.calls("messages.send")) == 4


@pytest.mark.parametrize(
    ("address", "settings", "limit"),
    [
        ("ann@gmail.com", GmailSettings(), 500),
        ("ann@googlemail.com", GmailSettings(), 500),
        ("ann@acme.com", GmailSettings(), 2000),
        ("ann@acme.com", GmailSettings(account_type="trial"), 500),
        ("ann@acme.com", GmailSettings(account_type="consumer"), 500),
        ("ann@acme.com", GmailSettings(daily_send_limit=50), 50),
        ("ann@gmail.com", GmailSettings(daily_send_limit=1500), 500),  # never above Gmail's
    ],
)
def test_daily_send_limits_follow_the_account_type(
    address: str, settings: GmailSettings, limit: int
) -> None:
    account = mw.EmailAccount(address=address, provider="gmail")
    credentials = mw.Credentials(account_id=account.id, kind="oauth2", access_token="ya29.x")
    provider = GmailProvider(account, credentials=credentials, settings=settings)
    assert provider.daily_send_limit == limit


# -- pacing ----------------------------------------------------------------------------------------


async def test_151_sends_in_a_minute_wait_on_the_clock_for_quota_units(
    gmail: GmailFake, bob: mw.EmailAccount, alice: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    provider = gmail_fake.provider(gmail, bob)  # Workspace: 2,000 a day
    start = clock.now()
    for _ in range(151):
        await provider.send(outgoing(clock, bob, alice.address))
    sends = gmail.calls("messages.send")
    assert len(sends) == 151
    assert all(s.at == start for s in sends[:150])  # 150 x 100 units = the minute's 15,000
    assert sends[150].at == start + timedelta(seconds=0.4)  # 100 units at 250 a second


# -- lost answers on send --------------------------------------------------------------------------


async def test_a_send_whose_answer_was_lost_is_confirmed_from_sent(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount, bob: mw.EmailAccount
) -> None:
    gmail.fail_next(alice.address, "messages.send", Fault(lost="after"))
    message = outgoing(gmail.clock, alice, bob.address)
    ref = await provider.send(message)
    (sent,) = [m for m in gmail.mailbox(alice.address) if "SENT" in m.labels]
    assert (ref.message_id, ref.provider_id, ref.thread_id) == (
        message.message_id,
        sent.id,
        sent.thread_id,
    )
    assert len(gmail.calls("messages.send")) == 1  # never sent twice
    lookup = gmail.calls("messages.list")[0].params
    assert lookup["labelIds"] == ["SENT"]
    assert lookup["q"] == [f"rfc822msgid:{message.message_id.strip('<>')}"]
    assert gmail.received(bob.address, message.message_id)


async def test_a_lost_send_that_is_not_in_sent_is_delivery_unknown(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    gmail.fail_next(alice.address, "messages.send", Fault(lost="dropped"))
    message = outgoing(clock, alice, "peer@example.org")
    start = clock.now()
    with pytest.raises(mw.DeliveryUnknown) as excinfo:
        await provider.send(message)
    assert message.message_id in str(excinfo.value)
    assert "ReadTimeout" in str(excinfo.value)
    assert len(gmail.calls("messages.send")) == 1  # not resent
    assert len(gmail.calls("messages.list")) == 2  # looked twice, a few seconds apart
    assert clock.now() - start == timedelta(seconds=5)
    assert provider.sends.count() == 1  # it may have gone out: counted


async def test_a_refused_connection_on_send_is_transient_and_retried(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount, bob: mw.EmailAccount
) -> None:
    gmail.fail_next(alice.address, "messages.send", Fault(lost="before"))
    await provider.send(outgoing(gmail.clock, alice, bob.address))
    assert len(gmail.calls("messages.send")) == 2
    assert len([m for m in gmail.mailbox(alice.address) if "SENT" in m.labels]) == 1


async def test_a_send_retried_after_a_500_is_not_sent_twice(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount, bob: mw.EmailAccount
) -> None:
    body = gmail_fake.google_error(500, "Backend Error", "backendError", "INTERNAL")
    gmail.fail_next(alice.address, "messages.send", Fault(500, body, acted=True))
    message = outgoing(gmail.clock, alice, bob.address)
    ref = await provider.send(message)
    assert len(gmail.calls("messages.send")) == 1  # the retry found it in Sent first
    (sent,) = [m for m in gmail.mailbox(alice.address) if "SENT" in m.labels]
    assert ref.provider_id == sent.id
    assert len([m for m in gmail.mailbox(bob.address)]) == 1


async def test_a_lost_modify_is_simply_retried(
    gmail: GmailFake, provider: GmailProvider, alice: mw.EmailAccount, bob: mw.EmailAccount
) -> None:
    other = gmail_fake.provider(gmail, bob)
    message = outgoing(gmail.clock, bob, alice.address)
    await other.send(message)
    ref = (await provider.locate([message.message_id]))[message.message_id].ref
    gmail.fail_next(alice.address, "messages.modify", Fault(lost="after"))
    await provider.mark_read(ref)  # idempotent: no lookup needed
    assert len(gmail.calls("messages.modify")) == 2
    assert "UNREAD" not in gmail.received(alice.address, message.message_id).labels
