"""Google OAuth for the Gmail provider: refresh before expiry and after a 401, one refresh for
concurrent calls, invalid_grant, missing scopes, and secrets kept out of every message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import timedelta

import gmail_fake
import pytest
import respx
from gmail_fake import READONLY, GmailFake, unauthorized

import mailwarm as mw
from mailwarm.providers import OAuthApp, ProviderContext, create_provider
from mailwarm.providers.gmail import GmailProvider


@pytest.fixture
def gmail(respx_mock: respx.MockRouter, clock: mw.VirtualClock) -> Iterator[GmailFake]:
    yield from gmail_fake.serve(respx_mock, clock)


@pytest.fixture
def alice(gmail: GmailFake) -> mw.EmailAccount:
    gmail.add_user("alice@gmail.com")
    return mw.EmailAccount(id="alice", address="alice@gmail.com", provider="gmail")


def expired(gmail: GmailFake, account: mw.EmailAccount) -> mw.Credentials:
    """Credentials whose access token Gmail no longer accepts."""
    return gmail.credentials(
        account, access_token="ya29.stale", token_expires_at=gmail.clock.now() - timedelta(1)
    )


def secrets_of(credentials: mw.Credentials) -> list[str]:
    values = [gmail_fake.CLIENT.client_secret]
    values += [credentials.access_token, credentials.refresh_token]
    return [v.get_secret_value() for v in values if v is not None]


async def test_a_token_close_to_expiry_is_refreshed_first_and_stored(
    gmail: GmailFake, alice: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    stored: list[mw.Credentials] = []
    old = gmail.credentials(alice, token_expires_at=clock.now() + timedelta(minutes=2))
    provider = gmail_fake.provider(gmail, alice, credentials=old, stored=stored)
    await provider.api.profile()
    (refresh,) = gmail.calls("token")
    assert old.refresh_token is not None
    assert refresh.body["refresh_token"] == old.refresh_token.get_secret_value()
    assert refresh.body["client_id"] == gmail_fake.CLIENT.client_id
    (new,) = stored
    assert new.access_token is not None
    assert new.access_token != old.access_token
    assert new.token_expires_at == clock.now() + timedelta(seconds=3599)
    assert new.refresh_token == old.refresh_token
    assert new.scopes == [gmail_fake.MODIFY]
    assert [c.status for c in gmail.calls("users.getProfile")] == [200]  # the new token


async def test_a_valid_token_is_used_without_a_refresh(
    gmail: GmailFake, alice: mw.EmailAccount
) -> None:
    await gmail_fake.provider(gmail, alice).api.profile()
    assert gmail.calls("token") == []


async def test_a_401_refreshes_once_and_retries(gmail: GmailFake, alice: mw.EmailAccount) -> None:
    provider = gmail_fake.provider(gmail, alice)
    gmail.revoke_access_tokens(alice.address)  # Google no longer takes the stored token
    assert await provider.locate(["<a@example.com>"]) == {}
    assert [c.status for c in gmail.calls("messages.list")] == [401, 200]
    assert len(gmail.calls("token")) == 1


async def test_a_second_401_after_a_refresh_is_auth_expired(
    gmail: GmailFake, alice: mw.EmailAccount
) -> None:
    gmail.fail_next(alice.address, "messages.list", unauthorized(), times=2)
    provider = gmail_fake.provider(gmail, alice, retry=mw.providers._retry.RetryPolicy())
    with pytest.raises(mw.AuthExpired) as excinfo:
        await provider.locate(["<a@example.com>"])
    assert "reconnect the account" in str(excinfo.value)
    assert len(gmail.calls("messages.list")) == 2
    assert len(gmail.calls("token")) == 1


async def test_invalid_grant_is_auth_expired_and_says_what_to_do_without_secrets(
    gmail: GmailFake, alice: mw.EmailAccount, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = expired(gmail, alice)
    gmail.fail_refresh(alice.address, "invalid_grant")
    provider = gmail_fake.provider(gmail, alice, credentials=credentials)
    with pytest.raises(mw.AuthExpired) as excinfo:
        await provider.mark_read(mw.MessageRef("<a@example.com>", provider_id="18c5f2a3b4d50000"))
    message = str(excinfo.value)
    assert "invalid_grant" in message
    assert "reconnect the account" in message
    assert (excinfo.value.provider, excinfo.value.account_id) == ("gmail", "alice")
    assert gmail.calls("messages.modify") == []  # nothing went out with the stale token
    shown = [message, repr(provider), repr(provider.tokens), repr(provider.api), caplog.text]
    shown.append(repr(provider.tokens.credentials))
    for secret in secrets_of(credentials):
        assert all(secret not in text for text in shown)


async def test_the_refreshed_token_never_shows_in_logs_or_reprs(
    gmail: GmailFake, alice: mw.EmailAccount, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stored: list[mw.Credentials] = []
    provider = gmail_fake.provider(gmail, alice, credentials=expired(gmail, alice), stored=stored)
    gmail.fail_next(alice.address, "messages.list", gmail_fake.forbidden("domainPolicy"))
    with pytest.raises(mw.PermanentProviderError) as excinfo:
        await provider.list_recent(gmail.clock.now())
    (new,) = stored
    for secret in secrets_of(new):
        assert secret not in caplog.text
        assert secret not in str(excinfo.value)
        assert secret not in repr(provider) + repr(new) + new.model_dump_json()


async def test_concurrent_calls_with_an_expired_token_refresh_once(
    gmail: GmailFake, alice: mw.EmailAccount
) -> None:
    provider = gmail_fake.provider(gmail, alice, credentials=expired(gmail, alice))
    await asyncio.gather(*(provider.locate([f"<m{n}@example.com>"]) for n in range(6)))
    assert len(gmail.calls("token")) == 1
    assert [c.status for c in gmail.calls("messages.list")] == [200] * 6


async def test_concurrent_401s_share_one_refresh(gmail: GmailFake, alice: mw.EmailAccount) -> None:
    provider = gmail_fake.provider(gmail, alice)
    gmail.revoke_access_tokens(alice.address)
    await asyncio.gather(*(provider.api.labels() for _ in range(5)))
    assert len(gmail.calls("token")) == 1
    statuses = [c.status for c in gmail.calls("labels.list")]
    assert statuses.count(200) == 5


async def test_a_rotated_refresh_token_is_stored_and_used_next_time(
    gmail: GmailFake, alice: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    gmail.rotate_refresh_tokens = True
    stored: list[mw.Credentials] = []
    old = expired(gmail, alice)
    provider = gmail_fake.provider(gmail, alice, credentials=old, stored=stored)
    await provider.api.profile()
    clock.advance_to(clock.now() + timedelta(hours=2))  # the new token expires as well
    await provider.api.profile()
    first, second = stored
    assert first.refresh_token != old.refresh_token
    assert first.refresh_token is not None
    assert gmail.calls("token")[1].body["refresh_token"] == first.refresh_token.get_secret_value()
    assert second.refresh_token != first.refresh_token


async def test_a_failing_credentials_sink_does_not_fail_the_call(
    gmail: GmailFake, alice: mw.EmailAccount, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(credentials: mw.Credentials) -> None:
        raise OSError("disk full")

    context = ProviderContext(
        clock=gmail.clock, oauth={"google": gmail_fake.CLIENT}, on_credentials=broken
    )
    provider = GmailProvider(alice, credentials=expired(gmail, alice), context=context)
    assert (await provider.api.profile())["emailAddress"] == alice.address
    assert "could not store the refreshed credentials of account alice (OSError)" in caplog.text


async def test_an_expired_token_without_a_refresh_token_is_auth_expired_at_once(
    gmail: GmailFake, alice: mw.EmailAccount, clock: mw.VirtualClock
) -> None:
    credentials = mw.Credentials(
        account_id="alice",
        kind="oauth2",
        access_token="ya29.old",
        token_expires_at=clock.now() - timedelta(minutes=1),
    )
    provider = gmail_fake.provider(gmail, alice, credentials=credentials)
    with pytest.raises(mw.AuthExpired, match="no refresh token"):
        await provider.api.profile()
    assert gmail.seen == []


async def test_a_rejected_oauth_client_is_a_permanent_error_naming_the_app(
    gmail: GmailFake, alice: mw.EmailAccount
) -> None:
    wrong = OAuthApp(client_id="other.apps.googleusercontent.com", client_secret="nope")
    context = ProviderContext(clock=gmail.clock, oauth={"google": wrong})
    provider = GmailProvider(alice, credentials=expired(gmail, alice), context=context)
    with pytest.raises(mw.PermanentProviderError) as excinfo:
        await provider.api.profile()
    assert "other.apps.googleusercontent.com" in str(excinfo.value)
    assert "invalid_client" in str(excinfo.value)
    assert "nope" not in str(excinfo.value)


async def test_the_token_endpoint_down_is_transient(
    respx_mock: respx.MockRouter, clock: mw.VirtualClock
) -> None:
    respx_mock.post(gmail_fake.TOKEN_URL).respond(503, text="Service Unavailable")
    account = mw.EmailAccount(id="ann", address="ann@gmail.com", provider="gmail")
    credentials = mw.Credentials(account_id="ann", kind="oauth2", refresh_token="1//r")
    context = ProviderContext(clock=clock, oauth={"google": gmail_fake.CLIENT})
    provider = GmailProvider(account, credentials=credentials, context=context)
    with pytest.raises(mw.TransientProviderError, match="token endpoint answered 503"):
        await provider.tokens.token()


async def test_a_missing_scope_is_auth_expired_naming_the_scope(gmail: GmailFake) -> None:
    gmail.add_user("reader@globex.io", scopes=(READONLY,))
    account = mw.EmailAccount(id="reader", address="reader@globex.io", provider="gmail")
    provider = gmail_fake.provider(gmail, account)
    with pytest.raises(mw.AuthExpired) as excinfo:
        await provider.mark_read(mw.MessageRef("<a@example.com>", provider_id="18c5f2a3b4d50000"))
    assert "insufficientPermissions" in str(excinfo.value)
    assert "https://www.googleapis.com/auth/gmail.modify" in str(excinfo.value)


def test_construction_checks_credentials_and_the_oauth_app(clock: mw.VirtualClock) -> None:
    account = mw.EmailAccount(id="ann", address="ann@gmail.com", provider="gmail")
    oauth = mw.Credentials(account_id="ann", kind="oauth2", refresh_token="1//r")
    password = mw.Credentials(account_id="ann", password="pw")
    with pytest.raises(mw.ConfigurationError, match="needs OAuth credentials"):
        create_provider(account, password)
    with pytest.raises(mw.ConfigurationError, match="needs OAuth credentials"):
        create_provider(account, None)
    with pytest.raises(mw.ConfigurationError, match='oauth=\\{"google"'):
        create_provider(account, oauth, context=ProviderContext(clock=clock))
