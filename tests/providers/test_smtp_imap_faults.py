"""SMTP/IMAP failures on the wire, against the real Dovecot and SMTP front end."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import mailserver
import pytest
from mailharness import make_accounts, provider_for

import mailwarm as mw
from mailwarm.engine import OutgoingMessage
from mailwarm.providers import ProviderContext, create_provider
from mailwarm.providers._imap import ImapConnection
from mailwarm.providers._retry import RetryPolicy


def message(sender: mw.EmailAccount, to: str, n: int = 0, **kw: object) -> OutgoingMessage:
    return OutgoingMessage(
        sender=sender.address,
        recipient=to,
        subject=f"Invoice {n}",
        text="Attached, as discussed.",
        message_id=f"<fault-{n}-{time.monotonic_ns()}@{sender.domain}>",
        date=datetime.now(UTC),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def clock() -> mw.VirtualClock:
    return mw.VirtualClock(datetime.now(UTC))


@pytest.fixture
def pair(mail_server: mailserver.MailServer) -> list[tuple[mw.EmailAccount, str]]:
    return make_accounts(mail_server, 2)


# -- authentication --------------------------------------------------------------------------


async def test_wrong_password_is_auth_expired_on_both_sides_and_check_says_so(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]], clock: mw.Clock
) -> None:
    (a, _), (b, _) = pair
    async with provider_for(mail_server, a, "not-the-password", clock=clock) as provider:
        with pytest.raises(mw.AuthExpired) as sent:
            await provider.send(message(a, b.address))
        assert "535" in str(sent.value)
        assert "not-the-password" not in str(sent.value)
        with pytest.raises(mw.AuthExpired) as read:
            await provider.locate(["<x@y.test>"])
        assert "AUTHENTICATIONFAILED" in str(read.value)
        report = await provider.check()
    assert report.ok is False
    assert report.checks == {"smtp": False, "imap": False}
    assert all("check the username and password" in p for p in report.problems)
    assert not any("not-the-password" in p for p in report.problems)


async def test_xoauth2_good_token_works_and_bad_token_fails_fast(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]], clock: mw.Clock
) -> None:
    (a, _), (b, _) = pair
    mail_server.add_token("good-token-a", a.address)
    settings = {k: v for k, v in _plain(mail_server).items()}

    def build(token: str) -> mw.Provider:
        credentials = mw.Credentials(account_id=a.id, kind="oauth2", access_token=token)
        return create_provider(a, credentials, settings, context=ProviderContext(clock=clock))

    async with build("good-token-a") as good:
        report = await good.check()
        assert report.ok, report.problems
        await good.send(message(a, b.address))
    started = time.monotonic()
    async with build("stolen-token") as bad:
        with pytest.raises(mw.AuthExpired):
            await bad.locate(["<x@y.test>"])
        with pytest.raises(mw.AuthExpired):
            await bad.send(message(a, b.address))
    # aioimaplib alone waits for its 10 s command timeout here (the unanswered challenge).
    assert time.monotonic() - started < 3


async def test_xoauth2_token_callback_is_asked_for_each_login(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]], clock: mw.Clock
) -> None:
    from mailwarm.providers.smtp_imap import SmtpImapProvider, SmtpImapSettings

    (a, _), (b, _) = pair
    mail_server.add_token("fresh-1", a.address)
    calls: list[int] = []

    async def token() -> str:
        calls.append(1)
        return "fresh-1"

    provider = SmtpImapProvider(
        a,
        credentials=mw.Credentials(account_id=a.id, kind="oauth2", refresh_token="r"),
        settings=SmtpImapSettings.model_validate(_plain(mail_server)),
        context=ProviderContext(clock=clock),
        token_provider=token,
    )
    async with provider:
        await provider.send(message(a, b.address))
        assert await provider.locate(["<nothing@here.test>"]) == {}
    assert len(calls) == 2  # one SMTP login, one IMAP login


def _plain(server: mailserver.MailServer) -> dict[str, object]:
    return {
        "smtp_host": server.host,
        "smtp_port": server.smtp_port,
        "smtp_security": "none",
        "imap_host": server.host,
        "imap_port": server.imap_port,
        "imap_security": "none",
    }


# -- TLS ---------------------------------------------------------------------------------------


async def test_tls_certificate_is_verified(
    tls_mail_server: mailserver.MailServer, clock: mw.Clock
) -> None:
    (a, password), (b, _) = make_accounts(tls_mail_server, 2)
    # Same servers, but without trusting the self-signed certificate.
    untrusted = provider_for(tls_mail_server, a, password, clock=clock, variant="tls", ca_file=None)
    async with untrusted:
        report = await untrusted.check()
        with pytest.raises(mw.PermanentProviderError) as excinfo:
            await untrusted.send(message(a, b.address))
    assert report.ok is False
    assert "certificate verification failed" in str(excinfo.value)
    assert any("certificate" in p for p in report.problems)
    trusted = provider_for(tls_mail_server, a, password, clock=clock, variant="starttls")
    async with trusted:
        assert (await trusted.check()).ok


async def test_plaintext_login_refused_by_a_tls_only_server_without_sending_the_password(
    tls_mail_server: mailserver.MailServer, clock: mw.Clock
) -> None:
    (a, password), _ = make_accounts(tls_mail_server, 2)
    settings = {
        "imap_host": tls_mail_server.host,
        "imap_port": tls_mail_server.imap_port,
        "imap_security": "none",
    }
    async with provider_for(tls_mail_server, a, password, clock=clock, **settings) as provider:
        with pytest.raises(mw.PermanentProviderError) as excinfo:
            await provider.locate(["<x@y.test>"])
    assert "only accepts logins over TLS" in str(excinfo.value)


# -- transient and ambiguous sends ---------------------------------------------------------


async def test_421_is_transient_and_retried_with_backoff(
    mail_server: mailserver.MailServer,
    pair: list[tuple[mw.EmailAccount, str]],
    clock: mw.VirtualClock,
) -> None:
    (a, password), (b, _) = pair
    mail_server.inject(a.address, mailserver.Fault("reply", times=2))
    policy = RetryPolicy(attempts=3, base=2, cap=10)
    before = clock.now()
    async with provider_for(mail_server, a, password, clock=clock, retry=policy) as provider:
        sent = message(a, b.address)
        await provider.send(sent)
    assert len(mail_server.find(b.address, sent.message_id)) == 1
    waited = (clock.now() - before).total_seconds()
    assert 0 <= waited <= 2 + 4  # two full-jitter waits, each within its cap
    mail_server.inject(a.address, mailserver.Fault("reply", times=5))
    async with provider_for(mail_server, a, password, clock=clock, retry=policy) as provider:
        with pytest.raises(mw.TransientProviderError) as excinfo:
            await provider.send(message(a, b.address, 1))
    assert "421" in str(excinfo.value)


async def test_permanent_reply_is_not_retried(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]], clock: mw.Clock
) -> None:
    (a, password), (b, _) = pair
    mail_server.inject(a.address, mailserver.Fault("reply", reply="554 5.7.1 Message rejected"))
    async with provider_for(mail_server, a, password, clock=clock, retry=RetryPolicy()) as p:
        with pytest.raises(mw.PermanentProviderError) as excinfo:
            await p.send(message(a, b.address))
        assert "554" in str(excinfo.value)
        await p.send(message(a, b.address, 2))  # the session is still usable


async def test_daily_quota_reply_is_quota_exhausted(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]], clock: mw.Clock
) -> None:
    (a, password), (b, _) = pair
    gmail_like = "550 5.4.5 Daily user sending limit exceeded."
    mail_server.inject(a.address, mailserver.Fault("reply", reply=gmail_like))
    async with provider_for(mail_server, a, password, clock=clock, retry=RetryPolicy()) as p:
        with pytest.raises(mw.QuotaExhausted):
            await p.send(message(a, b.address))


async def test_connection_lost_after_data_is_never_resent(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]], clock: mw.Clock
) -> None:
    (a, password), (b, _) = pair
    mail_server.inject(a.address, mailserver.Fault("drop_after_data"))
    sent = message(a, b.address)
    async with provider_for(mail_server, a, password, clock=clock, retry=RetryPolicy()) as p:
        with pytest.raises(mw.DeliveryUnknown) as excinfo:
            await p.send(sent)
        assert excinfo.value.retryable is False
        # It did arrive, exactly once: no blind resend happened.
        assert len(mail_server.find(b.address, sent.message_id)) == 1
        await p.send(message(a, b.address, 3))  # a new session carries on


async def test_engine_records_an_unconfirmed_send_once_and_lets_the_check_find_it(
    mail_server: mailserver.MailServer,
) -> None:
    from datetime import timedelta

    clock = mw.VirtualClock(datetime(2026, 12, 7, tzinfo=UTC))  # a Monday, before its window

    (a, pa), (b, pb) = make_accounts(mail_server, 2)
    passwords = {a.id: pa, b.id: pb}
    mail_server.inject(a.address, mailserver.Fault("drop_after_data", times=1))

    def providers(account: mw.EmailAccount) -> mw.Provider:
        return provider_for(mail_server, account, passwords[account.id], clock=clock)

    settings = mw.PoolSettings(
        strategy={"kind": "table", "values": [1]},
        engagement=mw.EngagementSettings(reply_rate=0),
    )
    async with mw.WarmupEngine([a, b], providers, settings=settings, clock=clock) as engine:
        await engine.run_until(clock.now() + timedelta(days=1))
        activities = await engine.store.activities()
    sent = [x for x in activities if x.action is mw.ActivityAction.SENT and x.account_id == a.id]
    unconfirmed = [x for x in sent if (x.detail or "").startswith("unconfirmed")]
    assert unconfirmed, [x.detail for x in sent]
    (first,) = unconfirmed[:1]
    assert len(mail_server.find(b.address, first.message_id or "")) == 1
    delivered = {
        x.message_id: x.placement
        for x in activities
        if x.action is mw.ActivityAction.DELIVERED and x.account_id == a.id
    }
    assert delivered[first.message_id] is mw.Placement.INBOX


# -- connections -------------------------------------------------------------------------------


async def test_sessions_are_reused_and_capped(
    mail_server: mailserver.MailServer, clock: mw.Clock
) -> None:
    (a, pa), (b, pb) = make_accounts(mail_server, 2)
    async with (
        provider_for(mail_server, a, pa, clock=clock) as sender,
        provider_for(mail_server, b, pb, clock=clock, max_connections=2) as receiver,
    ):
        sent = [message(a, b.address, n) for n in range(12)]
        for m in sent:
            await sender.send(m)
        found = await asyncio.gather(*(receiver.locate([m.message_id]) for m in sent))
        assert all(len(f) == 1 for f in found)
        await asyncio.gather(
            *(receiver.mark_read(f[m.message_id].ref) for f, m in zip(found, sent, strict=True))
        )
    assert sender._smtp.connections_opened == 1
    assert receiver._imap.connections_opened <= 2
    assert all("\\Seen" in x["flags"] for x in mail_server.messages(b.address, "INBOX"))


async def test_locate_uses_one_search_per_folder_per_chunk(
    mail_server: mailserver.MailServer, clock: mw.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a, pa), (b, pb) = make_accounts(mail_server, 2)
    searches: list[str] = []
    original = ImapConnection.uid_search

    async def counting(self: ImapConnection, criteria: str) -> list[int]:
        searches.append(criteria)
        return await original(self, criteria)

    monkeypatch.setattr(ImapConnection, "uid_search", counting)
    async with (
        provider_for(mail_server, a, pa, clock=clock) as sender,
        provider_for(mail_server, b, pb, clock=clock) as receiver,
    ):
        ids = []
        for n in range(50):
            to = f"{b.address.split('@')[0]}+Junk@{b.domain}" if n % 5 == 0 else b.address
            m = message(a, to, n)
            await sender.send(m)
            ids.append(m.message_id)
        searches.clear()
        found = await receiver.locate([*ids, "<absent@nowhere.test>"])
    assert set(found) == set(ids)
    assert sum(f.placement is mw.Placement.SPAM for f in found.values()) == 10
    # INBOX: 51 ids in 2 chunks of <= 40; Junk: only the 11 still missing, in 1 chunk.
    assert len(searches) == 3


async def test_a_dropped_pooled_connection_is_replaced(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]], clock: mw.Clock
) -> None:
    (a, pa), (b, pb) = pair
    async with (
        provider_for(mail_server, a, pa, clock=clock) as sender,
        provider_for(mail_server, b, pb, clock=clock, retry=RetryPolicy(attempts=2)) as receiver,
    ):
        first = message(a, b.address, 1)
        await sender.send(first)
        assert await receiver.locate([first.message_id])
        mail_server.doveadm("kick", b.address)  # the server drops b's IMAP sessions
        await asyncio.sleep(0.1)
        second = message(a, b.address, 2)
        await sender.send(second)
        assert set(await receiver.locate([first.message_id, second.message_id])) == {
            first.message_id,
            second.message_id,
        }


async def test_idle_ends_when_the_server_drops_the_connection(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]]
) -> None:
    (_, _), (b, pb) = pair
    conn = await ImapConnection.open(
        "127.0.0.1",
        mail_server.imap_port,
        security="none",
        context=None,
        server_hostname="127.0.0.1",
        timeout=5,
    )
    await conn.login(b.address, pb)
    await conn.select("INBOX")
    idle = asyncio.ensure_future(conn.idle(timeout=60))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    mail_server.doveadm("kick", b.address)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(idle, 5)
    assert time.monotonic() - started < 3
    assert conn.alive is False


async def test_idle_returns_the_servers_push(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]], clock: mw.Clock
) -> None:
    (a, pa), (b, pb) = pair
    conn = await ImapConnection.open(
        "127.0.0.1", mail_server.imap_port, security="none", context=None,
        server_hostname="127.0.0.1", timeout=5,
    )  # fmt: skip
    await conn.login(b.address, pb)
    await conn.select("INBOX")
    idle = asyncio.ensure_future(conn.idle(timeout=10))
    await asyncio.sleep(0.2)
    async with provider_for(mail_server, a, pa, clock=clock) as sender:
        await sender.send(message(a, b.address))
    pushed = await asyncio.wait_for(idle, 10)
    assert any(b"EXISTS" in line for line in pushed)
    await conn.logout()


# -- untrusted hosts ------------------------------------------------------------------------


async def test_private_hosts_refused_when_the_operator_does_not_allow_them(
    mail_server: mailserver.MailServer, pair: list[tuple[mw.EmailAccount, str]], clock: mw.Clock
) -> None:
    (a, pa), (b, _) = pair
    context = ProviderContext(clock=clock, allow_private_hosts=False)
    credentials = mw.Credentials(account_id=a.id, password=pa)
    async with create_provider(a, credentials, _plain(mail_server), context=context) as p:
        with pytest.raises(mw.ConfigurationError) as excinfo:
            await p.send(message(a, b.address))
        assert "non-public address (127.0.0.1)" in str(excinfo.value)
        with pytest.raises(mw.ConfigurationError):
            await p.locate(["<x@y.test>"])
        report = await p.check()
    assert report.ok is False
    assert len(report.problems) == 2
    assert mail_server.find(b.address, "<never>") == []


def test_bad_settings_name_the_account_and_field() -> None:
    account = mw.EmailAccount(address="ann@alpha.example", provider="smtp")
    credentials = mw.Credentials(account_id=account.id, password="pw")
    with pytest.raises(mw.ConfigurationError) as excinfo:
        create_provider(account, credentials, {"smtp_host": "smtp://mail.alpha.example"})
    assert "ann@alpha.example" in str(excinfo.value)
    assert "smtp_host" in str(excinfo.value)
    with pytest.raises(mw.ConfigurationError) as unknown:
        create_provider(account, credentials, {"imap_prot": 993})
    assert "imap_prot" in str(unknown.value)
    with pytest.raises(mw.ConfigurationError) as missing:
        create_provider(account, None, {})
    assert "needs credentials" in str(missing.value)


def test_secrets_never_in_repr() -> None:
    from mailwarm.providers.smtp_imap import SmtpImapProvider

    account = mw.EmailAccount(address="ann@alpha.example", provider="smtp")
    provider = SmtpImapProvider(
        account, credentials=mw.Credentials(account_id=account.id, password="hunter2-secret")
    )
    assert "hunter2" not in repr(provider)
    assert "hunter2" not in repr(provider._smtp)
    assert "hunter2" not in repr(vars(provider))


def test_default_hosts_and_ports() -> None:
    from mailwarm.providers.smtp_imap import SmtpImapProvider

    gmail = mw.EmailAccount(address="ann@gmail.com", provider="smtp")
    p = SmtpImapProvider(gmail, credentials=mw.Credentials(account_id=gmail.id, password="x"))
    assert (p.smtp_host, p.smtp_port, p.imap_host, p.imap_port) == (
        "smtp.gmail.com",
        587,
        "imap.gmail.com",
        993,
    )
    own = mw.EmailAccount(address="bob@beta.example", provider="smtp")
    q = SmtpImapProvider(own, credentials=mw.Credentials(account_id=own.id, password="x"))
    assert (q.smtp_host, q.imap_host, q.username) == (
        "smtp.beta.example",
        "imap.beta.example",
        own.address,
    )
