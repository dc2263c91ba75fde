"""Tokens for Graph: msal through a fake Entra ID, the cache round-trip, failures, secrets."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from graph_fake import CLIENT_ID, CLIENT_SECRET, Fault, GraphWorld
from pydantic import SecretStr

import mailwarm as mw
from mailwarm.providers import OAuthApp, ProviderContext, create_provider
from mailwarm.providers.graph import GraphProvider, GraphSettings

ADDRESSES = ["ann@contoso.example", "bob@fabrikam.example"]

# Every test here must actually call the fake Graph route (respx asserts it).
pytestmark = pytest.mark.respx(assert_all_called=True)


@pytest.fixture
def world(clock: mw.VirtualClock, respx_mock: Any) -> GraphWorld:
    return GraphWorld(clock, ADDRESSES, respx_mock)


def secrets_of(world: GraphWorld) -> list[str]:
    return [
        CLIENT_SECRET,
        *world.entra.refresh_tokens,
        *world.entra.access_tokens,
        *(c.token_cache.get_secret_value() for c in world.saved if c.token_cache),
    ]


async def test_the_first_call_migrates_the_refresh_token_and_stores_msal_cache(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    bob = world.accounts[1]
    given = world.credentials[bob.id].refresh_token
    assert given is not None
    provider = world.provider(bob)
    await provider.list_recent(clock.now())
    assert world.entra.token_calls == [
        {"address": bob.address, "refresh_token": given.get_secret_value()}
    ]
    (saved,) = world.saved
    assert saved.account_id == bob.id
    assert saved.token_cache is not None
    assert world.entra.issued[-1] in saved.token_cache.get_secret_value()  # the rotated one
    assert saved.scopes == sorted(
        f"https://graph.microsoft.com/{p}" for p in ("Mail.ReadWrite", "Mail.Send", "User.Read")
    )
    assert saved.token_expires_at == clock.now() + timedelta(seconds=3599)
    assert provider.credentials == saved
    assert "**********" in saved.model_dump_json()  # masked unless revealed
    assert world.entra.issued[-1] not in saved.model_dump_json()


async def test_a_provider_built_from_saved_credentials_uses_the_cache(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    bob = world.accounts[1]
    await world.provider(bob).list_recent(clock.now())
    (saved,) = world.saved
    cache_only = saved.model_copy(update={"refresh_token": None})
    again = world.provider(bob, credentials=cache_only)
    assert (await again.check()).ok
    assert len(world.entra.token_calls) == 1  # no second visit to the token endpoint
    assert len(world.saved) == 1  # nothing changed, nothing stored


async def test_a_401_refreshes_once_with_the_cached_refresh_token(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    bob = world.accounts[1]
    provider = world.provider(bob)
    await provider.list_recent(clock.now())
    rotated = world.entra.issued[-1]
    world.entra.access_tokens.clear()  # revoked before expiry: Graph answers 401
    await asyncio.gather(*(provider.list_recent(clock.now()) for _ in range(6)))
    assert len(world.entra.token_calls) == 2  # one refresh for all six
    assert world.entra.token_calls[-1]["refresh_token"] == rotated
    assert len(world.saved) == 2


async def test_a_second_401_after_a_refresh_is_auth_expired(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    bob = world.accounts[1]
    world.graph.fail_next(bob.address, "list_recent", Fault(401, "InvalidAuthenticationToken"), 2)
    with pytest.raises(mw.AuthExpired, match="reconnect the account"):
        await world.provider(bob).list_recent(clock.now())
    assert len(world.entra.token_calls) == 2


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        ("invalid_grant", 70000, "reconnect the account"),
        ("interaction_required", 50076, "reconnect the account"),
        ("invalid_client", 7000215, "client secret"),
    ],
)
@pytest.mark.respx(assert_all_called=False)  # no request reaches Graph here
async def test_token_failures_are_auth_expired_without_secrets(
    world: GraphWorld, clock: mw.VirtualClock, error: str, code: int, words: str
) -> None:
    bob = world.accounts[1]
    world.entra.fail_next(bob.address, error, code)
    with pytest.raises(mw.AuthExpired, match=words) as excinfo:
        await world.provider(bob).list_recent(clock.now())
    text = str(excinfo.value)
    assert f"{error} (AADSTS{code})" in text
    assert (excinfo.value.provider, excinfo.value.account_id) == ("graph", bob.id)
    assert excinfo.value.__cause__ is None  # msal's exception and result are not attached
    assert not any(secret in text for secret in secrets_of(world))
    assert world.graph.requests == []


@pytest.mark.respx(assert_all_called=False)  # no request reaches Graph here
async def test_a_wrong_client_secret_names_the_app(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    bob = world.accounts[1]
    wrong = OAuthApp(client_id=CLIENT_ID, client_secret=SecretStr("not-the-secret"))
    context = ProviderContext(clock=clock, oauth={"microsoft": wrong})
    provider = GraphProvider(
        bob,
        credentials=world.credentials[bob.id],
        settings=GraphSettings(),
        context=context,
        msal_http_client=world.entra,
    )
    with pytest.raises(mw.AuthExpired, match="invalid_client") as excinfo:
        await provider.list_recent(clock.now())
    assert "not-the-secret" not in str(excinfo.value)


@pytest.mark.respx(assert_all_called=False)  # no request reaches Graph here
async def test_an_unreachable_entra_id_is_transient(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    world.entra.down = True
    with pytest.raises(mw.TransientProviderError, match="token_endpoint_unreachable"):
        await world.provider(world.accounts[1]).list_recent(clock.now())


async def test_secrets_stay_out_of_reprs_and_logs(
    world: GraphWorld, clock: mw.VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailwarm")
    ann, bob = world.accounts
    provider = world.provider(ann)
    await provider.send(world.outgoing(ann, bob.address))
    world.entra.fail_next(ann.address)
    world.graph.fail_next(ann.address, "list_recent", Fault(401, "InvalidAuthenticationToken"))
    with pytest.raises(mw.AuthExpired) as excinfo:
        await provider.list_recent(clock.now())
    shown = [
        repr(provider),
        str(provider),
        repr(provider.credentials),
        str(provider.credentials),
        repr(provider._tokens),
        repr(provider._tokens._tokens),
        str(excinfo.value),
        repr(excinfo.value),
        caplog.text,
    ]
    secrets = secrets_of(world)
    assert len(secrets) > 3
    assert not [s for s in secrets for text in shown if s in text]


def test_importing_the_provider_does_not_import_msal() -> None:
    code = "import sys, mailwarm.providers.graph; assert 'msal' not in sys.modules, 'msal'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.respx(assert_all_called=False)  # no request reaches Graph here
async def test_without_msal_the_first_token_names_the_extra(
    world: GraphWorld, clock: mw.VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "msal", None)  # import msal now raises ImportError
    monkeypatch.delitem(sys.modules, "mailwarm.providers._msal", raising=False)
    provider = world.provider(world.accounts[1])
    with pytest.raises(mw.MissingExtra, match=r"mailwarm\[graph\]") as excinfo:
        await provider.list_recent(clock.now())
    assert excinfo.value.package == "msal"
    report = await provider.check()
    assert not report.ok
    assert report.checks == {"token": False}
    assert 'pip install "mailwarm[graph]"' in report.problems[0]


async def test_check_names_missing_permissions(world: GraphWorld) -> None:
    bob = world.accounts[1]
    world.entra.granted[bob.address] = ("Mail.ReadWrite", "User.Read")
    report = await world.provider(bob).check()
    assert not report.ok
    assert report.checks == {"token": True, "mailbox": True, "folders": True, "permissions": False}
    (problem,) = report.problems
    assert "Mail.Send" in problem
    assert "grant consent" in problem


async def test_check_notices_a_sign_in_to_another_mailbox(world: GraphWorld) -> None:
    bob = world.accounts[1]
    impostor = mw.EmailAccount(id=bob.id, address="sales@fabrikam.example", provider="graph")
    provider = world.provider(impostor, credentials=world.credentials[bob.id])
    report = await provider.check()
    assert report.checks["mailbox"] is False
    assert report.checks["token"] is True
    assert any(bob.address in p and "sales@fabrikam.example" in p for p in report.problems)


@pytest.mark.respx(assert_all_called=False)  # no request reaches Graph here
async def test_check_reports_a_broken_sign_in_in_words(world: GraphWorld) -> None:
    bob = world.accounts[1]
    world.entra.fail_next(bob.address)
    report = await world.provider(bob).check()
    assert (report.ok, report.checks) == (False, {"token": False})
    assert "reconnect the account" in report.problems[0]


@pytest.mark.respx(assert_all_called=False)  # no request reaches Graph here
def test_create_provider_builds_it_from_settings(world: GraphWorld) -> None:
    bob = world.accounts[1]
    provider = create_provider(
        bob, world.credentials[bob.id], {"page_size": 25}, context=world.context
    )
    assert isinstance(provider, GraphProvider)
    assert provider.name == "graph"
    assert provider.settings.page_size == 25
    assert provider.capabilities == frozenset(mw.engine.Capability)
    with pytest.raises(mw.ConfigurationError, match="page_size"):
        create_provider(bob, world.credentials[bob.id], {"page_size": 0}, context=world.context)
    with pytest.raises(mw.ConfigurationError, match="user"):
        create_provider(bob, world.credentials[bob.id], {"user": "x/../y"}, context=world.context)


@pytest.mark.respx(assert_all_called=False)  # no request reaches Graph here
def test_the_constructor_says_what_is_missing(world: GraphWorld) -> None:
    bob = world.accounts[1]
    creds = world.credentials[bob.id]
    with pytest.raises(mw.ConfigurationError, match=r'oauth\["microsoft"\]'):
        GraphProvider(bob, credentials=creds, context=ProviderContext(clock=world.clock))
    password = mw.Credentials(account_id=bob.id, password=SecretStr("pw"))
    with pytest.raises(mw.ConfigurationError, match="oauth2"):
        GraphProvider(bob, credentials=password, context=world.context)
    bare = mw.Credentials(account_id=bob.id, kind="oauth2", access_token=SecretStr("at"))
    with pytest.raises(mw.ConfigurationError, match="neither a token cache nor a refresh token"):
        GraphProvider(bob, credentials=bare, context=world.context)
