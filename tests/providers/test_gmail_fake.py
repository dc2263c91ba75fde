"""The Gmail fake and its oracle, tested: a test server that accepts anything proves nothing."""

from __future__ import annotations

import gmail_fake
import httpx
import pytest
import respx
from gmail_fake import GmailFake
from googleapiclient.discovery import build
from googleapiclient.http import HttpMock

import mailwarm as mw


@pytest.fixture
def gmail(respx_mock: respx.MockRouter, clock: mw.VirtualClock) -> GmailFake:
    fake = GmailFake(clock)
    respx_mock.route(host__in=["gmail.googleapis.com", "oauth2.googleapis.com"]).mock(
        side_effect=fake.handle
    )
    fake.add_user("ann@acme.com")
    return fake  # no violation check at the end: these tests make bad requests on purpose


def token(gmail: GmailFake) -> dict[str, str]:
    return {"Authorization": f"Bearer {gmail.issue_token('ann@acme.com')}"}


@pytest.mark.parametrize(
    ("method", "url", "body", "problem"),
    [
        ("GET", "gmail/v1/users/me/messages?format=metadata", None, "no query parameter 'format'"),
        ("GET", "gmail/v1/users/me/messages?includeSpamTrash=True", None, "not a boolean"),
        ("GET", "gmail/v1/users/me/messages?maxResults=ten", None, "not an integer"),
        ("GET", "gmail/v1/users/me/messages?q=a&q=b", None, "not repeated"),
        ("GET", "gmail/v1/users/me/messages/x?format=headers", None, "not in"),
        ("POST", "gmail/v1/users/me/messages/x/modify", {"addLabels": ["A"]}, "no field"),
        ("POST", "gmail/v1/users/me/messages/send", {"threadId": "t"}, "requires Message.raw"),
        ("POST", "gmail/v1/users/me/messages/send", {"raw": 5}, "expected a string"),
        ("POST", "gmail/v1/users/me/messages/x/move", {}, "not a Gmail API method"),
        ("GET", "gmail/v1/users/me/profile", {"x": 1}, "takes no request body"),
    ],
)
async def test_the_oracle_rejects_what_the_discovery_document_does_not_declare(
    gmail: GmailFake, method: str, url: str, body: object, problem: str
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.request(
            method, gmail_fake.ROOT + url, json=body, headers=token(gmail)
        )
    assert response.status_code == 400
    (violation,) = gmail.violations
    assert problem in violation


async def test_the_oracle_accepts_what_the_official_client_builds(gmail: GmailFake) -> None:
    service = build("gmail", "v1", http=HttpMock(), static_discovery=True)
    messages = service.users().messages()
    requests = [
        messages.list(userId="me", q="in:inbox", labelIds=["INBOX"], includeSpamTrash=True),
        messages.send(userId="me", body={"raw": "QUJD", "threadId": "t"}),
        messages.modify(userId="me", id="x", body={"addLabelIds": ["INBOX"]}),
        service.users()
        .history()
        .list(userId="me", startHistoryId="1", historyTypes=["messageAdded"]),
    ]
    for request in requests:
        path = request.uri.removeprefix(gmail_fake.ROOT).split("?")[0]
        method, _ = gmail.oracle.match(request.method, path) or (None, None)
        assert method is not None
    async with httpx.AsyncClient() as client:
        for request in requests:
            await client.request(
                request.method, request.uri, content=request.body, headers=token(gmail)
            )
    assert gmail.violations == []


async def test_the_fake_refuses_bad_tokens_and_missing_scopes(gmail: GmailFake) -> None:
    gmail.add_user("reader@acme.com", scopes=(gmail_fake.READONLY,))
    url = gmail_fake.ROOT + "gmail/v1/users/me/messages/18c5f2a3b4d50000/modify"
    async with httpx.AsyncClient() as client:
        anonymous = await client.post(url, json={})
        reader = {"Authorization": f"Bearer {gmail.issue_token('reader@acme.com')}"}
        readonly = await client.post(url, json={}, headers=reader)
        other = await client.get(
            gmail_fake.ROOT + "gmail/v1/users/bob@acme.com/profile", headers=token(gmail)
        )
        refresh = await client.post(
            gmail_fake.TOKEN_URL,
            data={
                "grant_type": "refresh_token",
                "refresh_token": "1//guess",
                "client_id": gmail_fake.CLIENT.client_id,
                "client_secret": "wrong",
            },
        )
    assert anonymous.status_code == 401
    assert readonly.status_code == 403
    assert readonly.json()["error"]["errors"][0]["reason"] == "insufficientPermissions"
    assert other.status_code == 403
    assert refresh.json()["error"] == "invalid_client"


async def test_the_fake_threads_only_as_gmail_documents(gmail: GmailFake) -> None:
    gmail.add_user("bob@globex.io")
    raw = (
        b"From: bob@globex.io\r\nTo: ann@acme.com\r\nSubject: Plans\r\n"
        b"Message-ID: <p@globex.io>\r\n\r\nhi\r\n"
    )
    parent = gmail.deliver("ann@acme.com", raw)
    same = raw.replace(b"<p@globex.io>", b"<q@globex.io>").replace(
        b"Subject: Plans", b"Subject: Re: Plans\r\nIn-Reply-To: <p@globex.io>"
    )
    other_subject = same.replace(b"Re: Plans", b"Something else").replace(b"<q@", b"<r@")
    assert gmail.deliver("ann@acme.com", same).thread_id == parent.thread_id
    assert gmail.deliver("ann@acme.com", other_subject).thread_id != parent.thread_id
