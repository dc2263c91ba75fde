"""The Gmail provider's own behaviour: request shapes (checked against the official client),
batched search, placement, pagination, history sync, batchModify, check() and settings."""

from __future__ import annotations

import base64
import email
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import gmail_fake
import pytest
import respx
from googleapiclient.discovery import build
from googleapiclient.http import HttpMock

import mailwarm as mw
from mailwarm.providers import ProviderContext, create_provider
from mailwarm.providers import _gmail_api as gmail_api
from mailwarm.providers.gmail import GmailProvider, GmailSettings


@pytest.fixture
def gmail(respx_mock: respx.MockRouter, clock: mw.VirtualClock) -> Iterator[gmail_fake.GmailFake]:
    yield from gmail_fake.serve(respx_mock, clock)


@pytest.fixture
def accounts(gmail: gmail_fake.GmailFake) -> list[mw.EmailAccount]:
    found = []
    for n, address in enumerate(["alice@gmail.com", "bob@globex.io", "carol@initech.net"]):
        gmail.add_user(address)
        found.append(mw.EmailAccount(id=f"u{n}", address=address, provider="gmail"))
    return found


@pytest.fixture
def a(gmail: gmail_fake.GmailFake, accounts: list[mw.EmailAccount]) -> GmailProvider:
    return gmail_fake.provider(gmail, accounts[0])


@pytest.fixture
def b(gmail: gmail_fake.GmailFake, accounts: list[mw.EmailAccount]) -> GmailProvider:
    return gmail_fake.provider(gmail, accounts[1])


async def deliver(
    gmail: gmail_fake.GmailFake, sender: GmailProvider, recipient: str, **fields: Any
) -> mw.OutgoingMessage:
    message = gmail_fake.outgoing(gmail.clock, sender.account, recipient, **fields)
    await sender.send(message)
    return message


def official(request: Any) -> tuple[str, str, list[tuple[str, str]], Any]:
    """Method, path, sorted query and JSON body of a request, for comparison."""
    parts = urlsplit(str(request.uri if hasattr(request, "uri") else request.url))
    query = sorted((k, v) for k, v in parse_qsl(parts.query) if k != "alt")
    body = request.body if hasattr(request, "uri") else request.content
    return request.method, parts.path, query, json.loads(body) if body else None


# -- request shapes ------------------------------------------------------------------------------


async def test_every_request_is_what_the_official_client_builds(
    gmail: gmail_fake.GmailFake,
    respx_mock: respx.MockRouter,
    a: GmailProvider,
    b: GmailProvider,
    accounts: list[mw.EmailAccount],
) -> None:
    """A whole session, then each request is rebuilt with google-api-python-client from the
    same arguments: it must produce the same method, path, query and body."""
    since = gmail.clock.now() - timedelta(minutes=1)
    first = await deliver(gmail, a, "bob+junk@globex.io")
    found = await b.locate([first.message_id, "<other@example.com>"])
    ref = await b.move_to_inbox(found[first.message_id].ref)
    await b.mark_read(ref)
    await b.flag(ref)
    await b.mark_important(ref)
    reply = gmail_fake.outgoing(
        gmail.clock,
        b.account,
        a.account.address,
        subject="Re: Venue options",
        in_reply_to=first.message_id,
        references=(first.message_id,),
    )
    await b.reply(ref, reply)
    await a.list_recent(since)
    changes = await a.changes(None, since=since)
    await a.changes(changes.history_id, since=since)
    await b.mark_read_many([found[first.message_id].ref])
    await a.check()

    service = build("gmail", "v1", http=HttpMock(), static_discovery=True)
    oracle = gmail_fake.oracle()
    compared = set()
    for call in respx_mock.calls:
        request = call.request
        if request.url.host != "gmail.googleapis.com":
            continue
        matched = oracle.match(request.method, request.url.path.lstrip("/"))
        assert matched is not None
        method, path_params = matched
        kwargs: dict[str, Any] = dict(path_params)
        for name, values in parse_qsl_multi(request.url.query.decode()).items():
            spec = method.parameters[name]
            typed = [v == "true" if spec["type"] == "boolean" else v for v in values]
            typed = [int(v) if spec["type"] == "integer" else v for v in typed]
            kwargs[name] = typed if spec.get("repeated") else typed[0]
        if request.content:
            kwargs["body"] = json.loads(request.content)
        target: Any = service
        for part in method.id.split(".")[1:-1]:
            target = getattr(target, part)()
        built = getattr(target, method.id.split(".")[-1])(**kwargs)
        assert official(built) == official(request), method.id
        compared.add(method.short)
    assert compared == {
        "messages.send",
        "messages.list",
        "messages.get",
        "messages.modify",
        "messages.batchModify",
        "labels.list",
        "history.list",
        "users.getProfile",
    }


def parse_qsl_multi(query: str) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        result.setdefault(key, []).append(value)
    return result


async def test_send_posts_base64url_mime_and_a_reply_carries_the_thread(
    gmail: gmail_fake.GmailFake, a: GmailProvider, b: GmailProvider
) -> None:
    message = await deliver(gmail, a, b.account.address)
    (send,) = gmail.calls("messages.send")
    assert set(send.body) == {"raw"}
    mime = email.message_from_bytes(base64.urlsafe_b64decode(send.body["raw"]))
    assert mime["Message-ID"] == message.message_id
    assert mime["To"] == b.account.address
    assert b"\r\n" in base64.urlsafe_b64decode(send.body["raw"])  # RFC 5322 line ends
    received = (await b.locate([message.message_id]))[message.message_id]
    # A ref without a thread id (e.g. from storage) is resolved with messages.get first.
    bare = mw.MessageRef(message.message_id, provider_id=received.ref.provider_id)
    reply = gmail_fake.outgoing(
        gmail.clock,
        b.account,
        a.account.address,
        subject="Re: Venue options",
        in_reply_to=message.message_id,
        references=(message.message_id,),
    )
    ref = await b.reply(bare, reply)
    assert gmail.calls("messages.send")[1].body["threadId"] == received.ref.thread_id
    assert ref.thread_id == received.ref.thread_id
    assert ref.folder == "SENT"


async def test_a_reply_without_in_reply_to_of_the_original_is_refused(
    gmail: gmail_fake.GmailFake, a: GmailProvider, b: GmailProvider
) -> None:
    message = await deliver(gmail, a, b.account.address)
    ref = (await b.locate([message.message_id]))[message.message_id].ref
    with pytest.raises(mw.PermanentProviderError, match="In-Reply-To"):
        await b.reply(ref, gmail_fake.outgoing(gmail.clock, b.account, a.account.address))
    assert len(gmail.calls("messages.send")) == 1


# -- locating -------------------------------------------------------------------------------------


async def test_locate_searches_in_chunks_of_twenty_with_spam_included(
    gmail: gmail_fake.GmailFake, a: GmailProvider, b: GmailProvider
) -> None:
    ids = [(await deliver(gmail, a, "bob+junk@globex.io")).message_id for _ in range(3)]
    query = [*ids, *(f"<missing-{n}@example.com>" for n in range(42))]
    found = await b.locate(query)
    assert set(found) == set(ids)
    assert all(found[i].placement is mw.Placement.SPAM for i in ids)
    searches = gmail.calls("messages.list", user="bob@globex.io")
    assert len(searches) == 3  # 45 ids: 20 + 20 + 5
    for search in searches:
        assert search.params["includeSpamTrash"] == ["true"]
        q = search.params["q"][0]
        assert q.startswith("{rfc822msgid:")
        assert q.endswith("} -in:sent")
    assert searches[2].params["q"][0].count("rfc822msgid:") == 5
    assert len(gmail.calls("messages.get")) == 3  # only the hits cost a get


async def test_ids_gmail_search_cannot_express_are_not_found_without_a_request(
    gmail: gmail_fake.GmailFake, b: GmailProvider
) -> None:
    assert await b.locate(["<a b@example.com>", "<{x}@example.com>", ""]) == {}
    assert gmail.seen == []


async def test_placement_follows_the_labels(
    gmail: gmail_fake.GmailFake, a: GmailProvider, b: GmailProvider
) -> None:
    promo = await deliver(gmail, a, "bob+promo@globex.io")
    archived = await deliver(gmail, a, b.account.address)
    gmail.received(b.account.address, archived.message_id).labels.discard("INBOX")
    found = await b.locate([promo.message_id, archived.message_id])
    assert found[promo.message_id].placement is mw.Placement.PROMOTIONS
    assert found[promo.message_id].ref.folder == "INBOX"
    assert found[archived.message_id].placement is mw.Placement.UNKNOWN
    assert found[archived.message_id].ref.folder is None


async def test_list_recent_pages_through_every_result(
    gmail: gmail_fake.GmailFake,
    a: GmailProvider,
    b: GmailProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gmail_api, "PAGE_SIZE", 5)
    since = gmail.clock.now()
    ids = {(await deliver(gmail, a, b.account.address)).message_id for _ in range(12)}
    spam = await deliver(gmail, a, "bob+junk@globex.io")
    recent = await b.list_recent(since)
    assert {x.ref.message_id for x in recent} == ids | {spam.message_id}
    pages = gmail.calls("messages.list", user="bob@globex.io")
    assert [p.params.get("pageToken") for p in pages] == [None, ["5"], ["10"]]
    q = pages[0].params["q"][0]
    assert q == f"{{in:inbox in:spam}} -in:sent after:{int(since.timestamp()) - 1}"


async def test_changes_use_history_and_fall_back_to_a_full_sync(
    gmail: gmail_fake.GmailFake, a: GmailProvider, b: GmailProvider
) -> None:
    since = gmail.clock.now() - timedelta(hours=1)
    first = await deliver(gmail, a, b.account.address)
    full = await b.changes(None, since=since)
    assert full.full_sync
    assert [x.ref.message_id for x in full.received] == [first.message_id]

    second = await deliver(gmail, a, "bob+junk@globex.io")
    await b.mark_read((await b.locate([first.message_id]))[first.message_id].ref)
    step = await b.changes(full.history_id, since=since)
    assert not step.full_sync
    assert [(x.ref.message_id, x.placement) for x in step.received] == [
        (second.message_id, mw.Placement.SPAM)
    ]
    (history,) = gmail.calls("history.list")
    assert history.params["startHistoryId"] == [full.history_id]
    assert history.params["historyTypes"] == ["messageAdded"]
    assert int(step.history_id) > int(full.history_id)

    gmail.expire_history(b.account.address)  # Gmail answers 404 for the old start id
    again = await b.changes(full.history_id, since=since)
    assert again.full_sync
    assert {x.ref.message_id for x in again.received} == {first.message_id, second.message_id}


# -- label changes -------------------------------------------------------------------------------


async def test_verbs_are_the_documented_label_changes(
    gmail: gmail_fake.GmailFake, a: GmailProvider, b: GmailProvider
) -> None:
    message = await deliver(gmail, a, "bob+junk@globex.io")
    ref = (await b.locate([message.message_id]))[message.message_id].ref
    moved = await b.move_to_inbox(ref)
    assert moved.provider_id == ref.provider_id  # Gmail ids survive label changes
    assert (ref.folder, moved.folder) == ("SPAM", "INBOX")
    await b.mark_read(moved)
    await b.flag(moved)
    await b.mark_important(moved)
    bodies = [c.body for c in gmail.calls("messages.modify")]
    assert bodies == [
        {"addLabelIds": ["INBOX"], "removeLabelIds": ["SPAM"]},
        {"removeLabelIds": ["UNREAD"]},
        {"addLabelIds": ["STARRED"]},
        {"addLabelIds": ["IMPORTANT"]},
    ]
    stored = gmail.received(b.account.address, message.message_id)
    assert stored.labels == {"INBOX", "STARRED", "IMPORTANT"}


async def test_move_to_inbox_outside_spam_changes_nothing(
    gmail: gmail_fake.GmailFake, a: GmailProvider, b: GmailProvider
) -> None:
    message = await deliver(gmail, a, b.account.address)
    ref = (await b.locate([message.message_id]))[message.message_id].ref
    with pytest.raises(mw.UnsupportedAction, match="not in spam"):
        await b.move_to_inbox(ref)
    assert gmail.calls("messages.modify") == []


async def test_an_unknown_gmail_id_is_re_resolved_by_message_id(
    gmail: gmail_fake.GmailFake, a: GmailProvider, b: GmailProvider
) -> None:
    message = await deliver(gmail, a, b.account.address)
    await b.mark_read(mw.MessageRef(message.message_id, provider_id="18c5f2a3b4d5ffff"))
    assert [c.status for c in gmail.calls("messages.modify")] == [404, 200]
    assert "UNREAD" not in gmail.received(b.account.address, message.message_id).labels


async def test_a_sent_ref_is_never_taken_for_the_received_copy(
    gmail: gmail_fake.GmailFake, a: GmailProvider
) -> None:
    message = gmail_fake.outgoing(gmail.clock, a.account, "peer@example.org")
    sent = await a.send(message)
    with pytest.raises(mw.PermanentProviderError, match="not in this mailbox"):
        await a.mark_read(sent)
    assert gmail.calls("messages.modify") == []


async def test_mark_read_many_is_one_batch_modify(
    gmail: gmail_fake.GmailFake, a: GmailProvider, b: GmailProvider
) -> None:
    ids = [(await deliver(gmail, a, b.account.address)).message_id for _ in range(4)]
    found = await b.locate(ids)
    refs = [found[i].ref for i in ids[:3]] + [mw.MessageRef(ids[3])]  # one without a handle
    await b.mark_read_many(refs)
    (batch,) = gmail.calls("messages.batchModify")
    assert sorted(batch.body["ids"]) == sorted(str(found[i].ref.provider_id) for i in ids)
    assert batch.body["removeLabelIds"] == ["UNREAD"]
    after = await b.locate(ids)
    assert all(after[i].seen for i in ids)


# -- check() and settings ------------------------------------------------------------------------


async def test_check_reports_each_problem_in_actionable_words(
    gmail: gmail_fake.GmailFake, accounts: list[mw.EmailAccount]
) -> None:
    alice, bob = accounts[0], accounts[1]
    # Bob's token used for Alice's account: the mailbox is the wrong one.
    wrong = gmail.credentials(bob, account_id=alice.id)
    report = await gmail_fake.provider(gmail, alice, credentials=wrong).check()
    assert not report.ok
    assert report.checks == {"token": True, "scopes": True, "profile": False, "labels": True}
    assert report.problems == [
        "the Google token belongs to bob@globex.io, not alice@gmail.com: reconnect with the "
        "right Google account"
    ]


async def test_check_without_the_modify_scope_says_to_reconnect(
    gmail: gmail_fake.GmailFake,
) -> None:
    gmail.add_user("reader@globex.io", scopes=(gmail_fake.READONLY,))
    account = mw.EmailAccount(id="r", address="reader@globex.io", provider="gmail")
    credentials = gmail.credentials(account, scopes=[])  # unknown: check() asks Google
    report = await gmail_fake.provider(gmail, account, credentials=credentials).check()
    assert len(gmail.calls("token")) == 1
    assert report.checks["scopes"] is False
    assert report.checks["profile"] is True
    (problem,) = report.problems
    assert "https://www.googleapis.com/auth/gmail.modify" in problem
    assert "reconnect" in problem


async def test_check_with_a_revoked_grant_stops_at_the_token(
    gmail: gmail_fake.GmailFake, accounts: list[mw.EmailAccount]
) -> None:
    credentials = gmail.credentials(
        accounts[0], token_expires_at=gmail.clock.now() - timedelta(minutes=1)
    )
    gmail.fail_refresh(accounts[0].address)
    report = await gmail_fake.provider(gmail, accounts[0], credentials=credentials).check()
    assert report.checks == {"token": False}
    (problem,) = report.problems
    assert "invalid_grant" in problem
    assert "reconnect the account" in problem
    assert [s.method for s in gmail.seen] == ["token"]


def test_create_provider_validates_gmail_settings(clock: mw.VirtualClock) -> None:
    account = mw.EmailAccount(id="ann", address="ann@acme.com", provider="gmail")
    credentials = mw.Credentials(account_id="ann", kind="oauth2", refresh_token="1//r")
    context = ProviderContext(clock=clock, oauth={"google": gmail_fake.CLIENT})
    provider = create_provider(account, credentials, {"account_type": "trial"}, context=context)
    assert isinstance(provider, GmailProvider)
    assert provider.account_type == "trial"
    assert provider.daily_send_limit == 500
    assert provider.capabilities == {
        mw.engine.Capability.MARK_IMPORTANT,
        mw.engine.Capability.FLAG,
        mw.engine.Capability.MOVE_TO_INBOX,
        mw.engine.Capability.THREADING,
    }
    with pytest.raises(mw.ConfigurationError, match="account_type"):
        create_provider(account, credentials, {"account_type": "free"}, context=context)
    with pytest.raises(mw.ConfigurationError, match="host"):
        create_provider(account, credentials, {"host": "imap.gmail.com"}, context=context)
    assert GmailSettings().resolved_account_type("ann@GoogleMail.com") == "consumer"


async def test_aclose_closes_and_a_later_call_reconnects(
    gmail: gmail_fake.GmailFake, a: GmailProvider
) -> None:
    await a.api.profile()
    client = a._client
    await a.aclose()
    await a.aclose()
    assert client is not None
    assert client.is_closed
    await a.api.profile()
    assert a._client is not None
    assert a._client is not client
