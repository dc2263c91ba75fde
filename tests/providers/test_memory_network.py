"""The in-memory mail network beyond the contract: folders, policies, events, faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import mailwarm as mw
from mailwarm.engine import Capability, MessageRef, OutgoingMessage
from mailwarm.providers import provider_class
from mailwarm.providers.memory import (
    Delivery,
    MailEvent,
    MemoryNetwork,
    MemoryProvider,
    tag_policy,
)


def message(
    sender: str,
    recipient: str,
    n: int = 1,
    *,
    subject: str = "Budget",
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
) -> OutgoingMessage:
    local, domain = sender.split("@")
    return OutgoingMessage(
        sender=sender,
        recipient=recipient,
        subject=subject,
        text="See attached.",
        message_id=f"<m{n}-{local}@{domain}>",
        date=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
        in_reply_to=in_reply_to,
        references=references,
    )


@pytest.fixture
def alice(network: MemoryNetwork, mailboxes: list[mw.EmailAccount]) -> MemoryProvider:
    return network.provider(mailboxes[0])


@pytest.fixture
def bob(network: MemoryNetwork, mailboxes: list[mw.EmailAccount]) -> MemoryProvider:
    return network.provider(mailboxes[1])


@pytest.mark.parametrize(
    ("recipient", "placement"),
    [
        ("bob@globex.io", mw.Placement.INBOX),
        ("bob+junk@globex.io", mw.Placement.SPAM),
        ("bob+SPAM@globex.io", mw.Placement.SPAM),
        ("bob+news@globex.io", mw.Placement.INBOX),
    ],
)
def test_tag_policy(recipient: str, placement: mw.Placement) -> None:
    sent = message("alice@acme.com", recipient)
    delivery = Delivery("alice@acme.com", recipient, sent, sent.date)
    assert tag_policy(delivery) is placement


async def test_subaddress_reaches_the_base_mailbox(
    network: MemoryNetwork, alice: MemoryProvider, bob: MemoryProvider
) -> None:
    assert network.has_mailbox("bob+anything@globex.io")
    assert not network.has_mailbox("bobby+x@globex.io")
    await alice.send(message("alice@acme.com", "Bob+Junk@globex.io"))
    (copy,) = network.messages("bob@globex.io", "Junk")
    assert copy.recipient == "bob+junk@globex.io"
    assert network.messages("bob@globex.io", "INBOX") == []


async def test_an_exact_plus_mailbox_wins_over_the_base(
    network: MemoryNetwork, alice: MemoryProvider
) -> None:
    network.add_mailbox("bob+junk@globex.io")
    await alice.send(message("alice@acme.com", "bob+junk@globex.io"))
    assert len(network.messages("bob+junk@globex.io", "Junk")) == 1
    assert network.messages("bob@globex.io") == []


async def test_send_keeps_a_seen_sent_copy_and_delivers_a_separate_one(
    network: MemoryNetwork, alice: MemoryProvider
) -> None:
    ref = await alice.send(message("alice@acme.com", "bob@globex.io"))
    (sent,) = network.messages("alice@acme.com")
    (inbox,) = network.messages("bob@globex.io")
    assert (sent.folder, sent.flags) == ("Sent", {"\\Seen"})
    assert (inbox.folder, inbox.flags) == ("INBOX", set())
    assert sent is not inbox
    assert ref == MessageRef(sent.message_id, str(sent.uid), "Sent", sent.thread_id)


async def test_custom_placement_policy_sees_each_delivery(clock: mw.VirtualClock) -> None:
    seen: list[Delivery] = []

    def policy(delivery: Delivery) -> mw.Placement:
        seen.append(delivery)
        return mw.Placement.SPAM

    network = MemoryNetwork(clock, placement=policy)
    a = mw.EmailAccount(address="a@one.com")
    network.add_accounts([a, mw.EmailAccount(address="b@two.com")])
    clock.advance_to(clock.now() + timedelta(hours=2))
    await network.provider(a).send(message("a@one.com", "b@two.com"))
    (delivery,) = seen
    assert (delivery.sender, delivery.recipient, delivery.at) == (
        "a@one.com",
        "b@two.com",
        clock.now(),
    )
    assert network.messages("b@two.com")[0].folder == "Junk"


async def test_events_are_emitted_once_per_change(
    network: MemoryNetwork, alice: MemoryProvider, bob: MemoryProvider
) -> None:
    events: list[MailEvent] = []
    network.observers.append(events.append)
    await alice.send(message("alice@acme.com", "bob+junk@globex.io"))
    ref = (await bob.locate(["<m1-alice@acme.com>"]))["<m1-alice@acme.com>"].ref
    ref = await bob.move_to_inbox(ref)
    for _ in range(2):
        await bob.mark_read(ref)
        await bob.mark_important(ref)
        await bob.flag(ref)
    reply = message(
        "bob@globex.io", "alice@acme.com", 2, in_reply_to="<m1-alice@acme.com>", subject="Re: x"
    )
    await bob.reply(ref, reply)
    kinds = [(e.kind, e.mailbox) for e in events]
    assert kinds == [
        ("delivered", "bob@globex.io"),
        ("rescued", "bob@globex.io"),
        ("read", "bob@globex.io"),
        ("important", "bob@globex.io"),
        ("flagged", "bob@globex.io"),
        ("delivered", "alice@acme.com"),
        ("replied", "bob@globex.io"),
    ]
    assert events[0].placement is mw.Placement.SPAM
    assert events[5].placement is mw.Placement.INBOX
    assert {e.sender for e in events[:5]} == {"alice@acme.com"}


async def test_move_gives_a_new_uid_and_forgets_the_old_one(
    network: MemoryNetwork, alice: MemoryProvider, bob: MemoryProvider
) -> None:
    await alice.send(message("alice@acme.com", "bob+junk@globex.io"))
    (junk,) = network.messages("bob@globex.io")
    old_uid = junk.uid
    new = await bob.move_to_inbox(MessageRef(junk.message_id, str(old_uid), "Junk"))
    (moved,) = network.messages("bob@globex.io")
    assert moved.folder == "INBOX"
    assert moved.uid != old_uid
    assert new == MessageRef(moved.message_id, str(moved.uid), "INBOX", moved.thread_id)
    assert network.messages("bob@globex.io", "Junk") == []


async def test_refs_resolve_by_message_id_when_the_handle_is_foreign(
    network: MemoryNetwork, alice: MemoryProvider, bob: MemoryProvider
) -> None:
    await alice.send(message("alice@acme.com", "bob@globex.io"))
    for handle in ("AAMkAGI2-graph-id", "999", None):
        await bob.flag(MessageRef("<m1-alice@acme.com>", provider_id=handle))
    assert network.messages("bob@globex.io")[0].flags == {"\\Flagged"}
    # A handle that points at the Sent copy never resolves to it.
    sent_uid = network.messages("alice@acme.com")[0].uid
    with pytest.raises(mw.PermanentProviderError):
        await alice.mark_read(MessageRef("<m1-alice@acme.com>", provider_id=str(sent_uid)))


async def test_list_recent_reports_flags_and_skips_sent(
    network: MemoryNetwork, alice: MemoryProvider, bob: MemoryProvider
) -> None:
    await alice.send(message("alice@acme.com", "bob@globex.io", 1))
    await alice.send(message("alice@acme.com", "bob+junk@globex.io", 2))
    ref = (await bob.locate(["<m1-alice@acme.com>"]))["<m1-alice@acme.com>"].ref
    await bob.mark_read(ref)
    await bob.mark_important(ref)
    since = datetime(2026, 11, 2, tzinfo=UTC)
    recent = await bob.list_recent(since)
    assert [(x.ref.message_id, x.placement, x.seen, x.important, x.flagged) for x in recent] == [
        ("<m1-alice@acme.com>", mw.Placement.INBOX, True, True, False),
        ("<m2-alice@acme.com>", mw.Placement.SPAM, False, False, False),
    ]
    assert recent == list(
        (await bob.locate(["<m1-alice@acme.com>", "<m2-alice@acme.com>"])).values()
    )
    assert await alice.list_recent(since) == []
    assert await bob.list_recent(since + timedelta(days=1)) == []


async def test_reply_must_answer_the_original(alice: MemoryProvider, bob: MemoryProvider) -> None:
    await alice.send(message("alice@acme.com", "bob@globex.io"))
    ref = MessageRef("<m1-alice@acme.com>")
    with pytest.raises(mw.PermanentProviderError, match="In-Reply-To"):
        await bob.reply(ref, message("bob@globex.io", "alice@acme.com", 2))
    with pytest.raises(mw.PermanentProviderError, match="not in this mailbox"):
        await bob.reply(
            MessageRef("<ghost@x.com>"),
            message("bob@globex.io", "alice@acme.com", 3, in_reply_to="<ghost@x.com>"),
        )


async def test_threads_follow_in_reply_to_and_references(
    network: MemoryNetwork, alice: MemoryProvider, bob: MemoryProvider
) -> None:
    first = message("alice@acme.com", "bob@globex.io", 1)
    await alice.send(first)
    second = message(
        "bob@globex.io",
        "alice@acme.com",
        2,
        in_reply_to=first.message_id,
        references=(first.message_id,),
    )
    await bob.reply(MessageRef(first.message_id), second)
    third = message(
        "alice@acme.com",
        "bob@globex.io",
        3,
        in_reply_to=second.message_id,
        references=(first.message_id, second.message_id),
    )
    await alice.reply(MessageRef(second.message_id), third)
    for address in ("alice@acme.com", "bob@globex.io"):
        assert {m.thread_id for m in network.messages(address)} == {first.message_id}
    # An unrelated message starts its own thread.
    await alice.send(message("alice@acme.com", "bob@globex.io", 4))
    assert network.messages("bob@globex.io")[-1].thread_id == "<m4-alice@acme.com>"


async def test_fail_next_is_per_mailbox_action_and_count(
    network: MemoryNetwork, alice: MemoryProvider, bob: MemoryProvider
) -> None:
    network.fail_next("ALICE@acme.com", "send", mw.TransientProviderError("busy"), times=2)
    for _ in range(2):
        with pytest.raises(mw.TransientProviderError):
            await alice.send(message("alice@acme.com", "bob@globex.io"))
    await bob.send(message("bob@globex.io", "alice@acme.com"))  # other mailboxes unaffected
    await alice.send(message("alice@acme.com", "bob@globex.io"))
    assert len(network.messages("bob@globex.io", "INBOX")) == 1
    network.fail_next("bob@globex.io", "list_recent", mw.RateLimited("later", retry_after=5))
    with pytest.raises(mw.RateLimited):
        await bob.list_recent(datetime(2026, 1, 1, tzinfo=UTC))


async def test_check_and_close(network: MemoryNetwork, clock: mw.VirtualClock) -> None:
    stranger = MemoryProvider(mw.EmailAccount(address="x@nowhere.com"), network)
    report = await stranger.check()
    assert (report.ok, report.checks) == (False, {"mailbox": False})
    assert report.problems == ("no mailbox x@nowhere.com",)
    with pytest.raises(mw.PermanentProviderError):
        network.messages("x@nowhere.com")
    async with network.provider(mw.EmailAccount(address="y@somewhere.com")) as provider:
        assert (await provider.check()).ok
    assert provider.closed
    assert provider.capabilities == frozenset(Capability)


def test_registry_finds_the_memory_provider() -> None:
    assert provider_class("memory") is MemoryProvider
    with pytest.raises(mw.ConfigurationError, match="unknown provider"):
        provider_class("carrier-pigeon")
