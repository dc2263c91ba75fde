"""Sending and replying over Graph: request shapes, read-back, ambiguity, headers, limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from graph_fake import Fault, GraphWorld

import mailwarm as mw
from mailwarm.providers._retry import RetryPolicy
from mailwarm.providers.graph import GraphSettings

ADDRESSES = ["ann@contoso.example", "bob@fabrikam.example"]

# Every test here must actually call the fake Graph route (respx asserts it).
pytestmark = pytest.mark.respx(assert_all_called=True)


@pytest.fixture
def world(clock: mw.VirtualClock, respx_mock: Any) -> GraphWorld:
    return GraphWorld(clock, ADDRESSES, respx_mock)


def requests(world: GraphWorld, action: str) -> list[Any]:
    return [r for r in world.graph.requests if r.action == action]


async def test_send_is_draft_then_send_then_read_back(world: GraphWorld) -> None:
    ann, bob = world.accounts
    message = world.outgoing(ann, bob.address, sender_name="Ann", recipient_name="Bob")
    ref = await world.provider(ann).send(message)

    assert [r.action for r in world.graph.requests] == ["create_draft", "send", "get"]
    create, send, read = world.graph.requests
    assert (create.method, create.url.path) == ("POST", "/v1.0/me/messages")
    assert create.body["internetMessageId"] == message.message_id
    assert create.body["subject"] == message.subject
    assert create.body["toRecipients"] == [
        {"emailAddress": {"address": bob.address, "name": "Bob"}}
    ]
    assert "internetMessageHeaders" not in create.body
    (draft,) = world.graph.items(ann.address, "sentitems")
    assert send.url.path == f"/v1.0/me/messages/{draft.id}/send"
    assert send.body is None
    assert (
        read.url.params["$select"] == "id,internetMessageId,conversationId,parentFolderId,isDraft"
    )
    # sendMail (202 and no id) is never used.
    assert not any(r.url.path.endswith("/sendMail") for r in world.graph.requests)
    assert ref == mw.MessageRef(message.message_id, draft.id, "sentitems", draft.conversation_id)
    delivered = world.graph.received_copy(bob.address, message.message_id)
    assert delivered.folder == world.graph.boxes[bob.address].folders["inbox"]


async def test_read_back_polls_on_the_clock_until_the_sent_copy_appears(
    clock: mw.VirtualClock, respx_mock: Any
) -> None:
    world = GraphWorld(clock, ADDRESSES, respx_mock, sent_copy_delay=5)
    ann, bob = world.accounts
    started = clock.now()
    message = world.outgoing(ann, bob.address)
    ref = await world.provider(ann).send(message)
    reads = requests(world, "get")
    assert len(reads) >= 3  # 404, 404, ..., then found
    assert [r.at - started for r in reads][:3] == [
        timedelta(0),
        timedelta(seconds=1),
        timedelta(seconds=3),
    ]
    assert reads[-1].at - started >= timedelta(seconds=5)
    assert ref.folder == "sentitems"
    assert ref.message_id == message.message_id


async def test_read_back_is_bounded_and_never_fails_a_sent_message(
    clock: mw.VirtualClock, respx_mock: Any
) -> None:
    world = GraphWorld(clock, ADDRESSES, respx_mock, sent_copy_delay=3600)
    ann, bob = world.accounts
    started = clock.now()
    message = world.outgoing(ann, bob.address)
    provider = world.provider(ann, settings=GraphSettings(sent_copy_wait_seconds=10))
    ref = await provider.send(message)
    assert clock.now() - started <= timedelta(seconds=10)
    assert 2 <= len(requests(world, "get")) <= 5
    (draft,) = world.graph.items(ann.address, "sentitems")
    assert ref == mw.MessageRef(message.message_id, draft.id, None, draft.conversation_id)


async def test_an_answer_lost_after_send_is_confirmed_from_sent_items(world: GraphWorld) -> None:
    ann, bob = world.accounts
    lost = Fault(0, "", raise_exc=httpx.ReadTimeout("lost"), after_processing=True)
    world.graph.fail_next(ann.address, "send", lost)
    message = world.outgoing(ann, bob.address)
    ref = await world.provider(ann, retry=RetryPolicy(attempts=4)).send(message)
    assert len(requests(world, "send")) == 1  # never resent
    (confirm,) = requests(world, "confirm_send")
    assert confirm.url.params["$filter"] == f"internetMessageId eq '{message.message_id}'"
    assert ref.message_id == message.message_id
    assert ref.folder == "sentitems"
    world.graph.received_copy(bob.address, message.message_id)  # delivered exactly once


async def test_an_unconfirmable_send_is_delivery_unknown_and_not_resent(world: GraphWorld) -> None:
    ann, bob = world.accounts
    world.graph.fail_next(ann.address, "send", Fault(0, "", raise_exc=httpx.ReadTimeout("lost")))
    message = world.outgoing(ann, bob.address)
    provider = world.provider(ann, retry=RetryPolicy(attempts=4))
    with pytest.raises(mw.DeliveryUnknown) as excinfo:
        await provider.send(message)
    assert message.message_id in str(excinfo.value)
    assert (excinfo.value.provider, excinfo.value.account_id) == ("graph", ann.id)
    assert len(requests(world, "send")) == 1
    assert len(requests(world, "confirm_send")) >= 2  # looked more than once, within the bound
    assert world.graph.items(bob.address) == []


async def test_a_gateway_timeout_on_send_is_ambiguous_too(world: GraphWorld) -> None:
    ann, bob = world.accounts
    world.graph.fail_next(ann.address, "send", Fault(504, "GatewayTimeout", after_processing=True))
    message = world.outgoing(ann, bob.address)
    ref = await world.provider(ann, retry=RetryPolicy(attempts=4)).send(message)
    assert len(requests(world, "send")) == 1
    assert ref.folder == "sentitems"


async def test_a_connect_error_before_send_is_retried_safely(world: GraphWorld) -> None:
    ann, bob = world.accounts
    refused = Fault(0, "", raise_exc=httpx.ConnectError("refused"))
    world.graph.fail_next(ann.address, "send", refused)
    message = world.outgoing(ann, bob.address)
    provider = world.provider(ann, retry=RetryPolicy(attempts=3))
    await provider.send(message)
    assert len(requests(world, "send")) == 2
    world.graph.received_copy(bob.address, message.message_id)


async def test_an_unresolvable_recipient_fails_permanently_and_discards_the_draft(
    world: GraphWorld,
) -> None:
    ann, _ = world.accounts
    with pytest.raises(mw.PermanentProviderError, match="ErrorInvalidRecipients"):
        await world.provider(ann).send(world.outgoing(ann, "not-an-address"))
    assert len(requests(world, "delete")) == 1
    assert world.graph.items(ann.address) == []


async def test_graph_refuses_non_x_headers_so_threading_headers_never_travel_as_json(
    world: GraphWorld,
) -> None:
    """Graph takes only x- names in internetMessageHeaders (400 InvalidInternetMessageHeader,
    as the fake does), and the JSON message has no In-Reply-To/References fields: a plain
    send loses them. Threading therefore goes through createReply (see the reply tests)."""
    ann, bob = world.accounts
    token = world.entra.mint_access_token(ann.address)
    headers = {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'}
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            "https://graph.microsoft.com/v1.0/me/messages",
            headers=headers,
            json={
                "subject": "x",
                "internetMessageHeaders": [{"name": "In-Reply-To", "value": "<p@x>"}],
            },
        )
        accepted = await client.post(
            "https://graph.microsoft.com/v1.0/me/messages",
            headers=headers,
            json={
                "subject": "x",
                "internetMessageHeaders": [{"name": "X-Campaign", "value": "q4"}],
            },
        )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "InvalidInternetMessageHeader"
    assert accepted.status_code == 201

    parent = world.outgoing(bob, ann.address)
    message = world.outgoing(
        ann, bob.address, in_reply_to=parent.message_id, references=(parent.message_id,)
    )
    await world.provider(ann).send(message)
    raw = world.graph.raw(bob.address, message.message_id)
    assert raw["Message-ID"] == message.message_id
    assert raw["In-Reply-To"] is None
    assert raw["References"] is None


async def test_reply_uses_create_reply_then_patch_then_send(world: GraphWorld) -> None:
    ann, bob = world.accounts
    original = world.outgoing(ann, bob.address, subject="Venue options")
    sent = await world.provider(ann).send(original)
    replier = world.provider(bob)
    received = (await replier.locate([original.message_id]))[original.message_id]
    world.graph.requests.clear()
    reply = world.outgoing(
        bob,
        ann.address,
        subject="Re: Venue options",
        in_reply_to=original.message_id,
        references=(original.message_id,),
    )
    ref = await replier.reply(received.ref, reply)

    actions = [r.action for r in world.graph.requests]
    assert actions == ["get", "folders", "folders", "reply", "update_draft", "send", "get"]
    create, patch = requests(world, "reply")[0], requests(world, "update_draft")[0]
    assert create.url.path == f"/v1.0/me/messages/{received.ref.provider_id}/createReply"
    assert create.body is None  # never both comment and message
    assert patch.method == "PATCH"
    assert patch.body["internetMessageId"] == reply.message_id
    assert patch.body["subject"] == "Re: Venue options"
    assert set(patch.body) == {"subject", "body", "toRecipients", "internetMessageId"}
    assert ref.message_id == reply.message_id
    assert ref.thread_id == received.ref.thread_id
    raw = world.graph.raw(ann.address, reply.message_id)
    assert raw["In-Reply-To"] == original.message_id
    answer = (await world.provider(ann).locate([reply.message_id]))[reply.message_id]
    assert answer.ref.thread_id == sent.thread_id


@pytest.mark.respx(assert_all_called=False)  # no request reaches Graph here
async def test_a_reply_to_something_else_is_refused_before_any_request(world: GraphWorld) -> None:
    ann, bob = world.accounts
    reply = world.outgoing(bob, ann.address, in_reply_to="<other@x>")
    ref = mw.MessageRef("<original@x>", "AAkALg-whatever")
    with pytest.raises(mw.PermanentProviderError, match="In-Reply-To"):
        await world.provider(bob).reply(ref, reply)
    assert world.graph.requests == []


async def test_sends_are_paced_at_thirty_a_minute(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    ann, bob = world.accounts
    provider = world.provider(ann)
    started = clock.now()
    for _ in range(31):
        await provider.send(world.outgoing(ann, bob.address))
    creates = requests(world, "create_draft")
    assert all(r.at == started for r in creates[:30])
    assert creates[30].at - started >= timedelta(seconds=2)  # one token per 2 s after the burst


async def test_the_daily_recipient_limit_is_a_quota(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    ann, bob = world.accounts
    provider = world.provider(ann, settings=GraphSettings(recipients_per_day=2))
    for _ in range(2):
        await provider.send(world.outgoing(ann, bob.address))
    with pytest.raises(mw.QuotaExhausted) as excinfo:
        await provider.send(world.outgoing(ann, bob.address))
    assert (excinfo.value.provider, excinfo.value.account_id) == ("graph", ann.id)
    assert len(requests(world, "create_draft")) == 2  # refused before any request
    clock.advance_to(clock.now() + timedelta(hours=24, seconds=1))
    await provider.send(world.outgoing(ann, bob.address))  # the rolling day moved on


async def test_exchange_blocking_submission_is_a_quota(world: GraphWorld) -> None:
    ann, bob = world.accounts
    world.graph.fail_next(ann.address, "send", Fault(403, "ErrorExceededMessageLimit"))
    with pytest.raises(mw.QuotaExhausted, match="ErrorExceededMessageLimit"):
        await world.provider(ann).send(world.outgoing(ann, bob.address))


async def test_mail_to_oneself_never_counts_as_received(
    world: GraphWorld, clock: mw.VirtualClock
) -> None:
    ann, _ = world.accounts
    provider = world.provider(ann)
    message = world.outgoing(ann, ann.address)
    await provider.send(message)
    world.graph.received_copy(ann.address, message.message_id)  # it is in the Inbox...
    assert await provider.locate([message.message_id]) == {}  # ...but not "received"
    recent = await provider.list_recent(clock.now() - timedelta(minutes=1))
    assert message.message_id not in {x.ref.message_id for x in recent}


async def test_a_named_user_mailbox_is_addressed_by_path(world: GraphWorld) -> None:
    ann, bob = world.accounts
    provider = world.provider(ann, settings=GraphSettings(user=ann.address))
    message = world.outgoing(ann, bob.address)
    await provider.send(message)
    assert (await provider.check()).ok
    paths = {r.url.path for r in world.graph.requests}
    assert f"/v1.0/users/{ann.address}/messages" in paths
    assert f"/v1.0/users/{ann.address}" in paths
    assert not any(p.startswith("/v1.0/me") for p in paths)
    world.graph.received_copy(bob.address, message.message_id)
