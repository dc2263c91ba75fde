"""The provider contract: what every :class:`mailwarm.Provider` must do, as reusable tests.

A provider test module plugs a mail system in by subclassing :class:`ProviderContract` and
giving it a ``harness`` fixture that returns a :class:`ContractHarness`::

    class TestMemoryContract(ProviderContract):
        @pytest.fixture(params=["plain", "mixed-case"])
        def harness(self, request) -> ContractHarness: ...

Every test is a coroutine (pytest-asyncio runs them) and uses only the :class:`Provider`
methods plus the harness's few hooks, so SMTP/IMAP, Gmail and Graph providers can run the
same suite against their fakes or test tenants.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

import mailwarm as mw
from mailwarm.engine import Capability, Located, MessageRef, OutgoingMessage, Provider


@dataclass(frozen=True)
class Headers:
    """Threading headers of a received message, as the harness reads them."""

    subject: str
    in_reply_to: str | None
    references: tuple[str, ...]


@dataclass
class ContractHarness:
    """Everything the contract needs from one mail system.

    ``accounts``: at least three mailboxes on the system. ``provider`` builds a fresh provider
    for one. ``spam_address`` gives an address whose mail lands in that account's spam folder
    (for the memory network, ``user+junk@domain``). ``unknown_address`` does not exist.
    ``inject`` makes the next call of ``action`` on an account's mailbox raise an error.
    ``headers`` reads a received message's threading headers. ``settle`` waits until sent
    mail is visible to ``locate`` (a no-op where delivery is synchronous).
    """

    name: str
    clock: mw.Clock
    accounts: Sequence[mw.EmailAccount]
    provider: Callable[[mw.EmailAccount], Provider]
    spam_address: Callable[[mw.EmailAccount], str]
    unknown_address: str
    inject: Callable[[mw.EmailAccount, str, mw.ProviderError], None]
    headers: Callable[[mw.EmailAccount, str], Awaitable[Headers]]
    settle: Callable[[], Awaitable[None]]


def outgoing(
    h: ContractHarness,
    sender: mw.EmailAccount,
    recipient: str,
    *,
    subject: str = "Quarterly numbers",
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
) -> OutgoingMessage:
    """A plain message with a fresh Message-ID on the sender's domain."""
    return OutgoingMessage(
        sender=sender.address,
        recipient=recipient,
        subject=subject,
        text="Hi,\n\nthe numbers are in the shared folder.\n\nBest",
        message_id=f"<{uuid.uuid4()}@{sender.domain}>",
        date=h.clock.now(),
        sender_name="Sender",
        recipient_name="Recipient",
        in_reply_to=in_reply_to,
        references=references,
    )


async def deliver(
    h: ContractHarness, sender: Provider, recipient: str, **fields: Any
) -> tuple[OutgoingMessage, MessageRef]:
    message = outgoing(h, sender.account, recipient, **fields)
    ref = await sender.send(message)
    await h.settle()
    return message, ref


async def located(provider: Provider, message_id: str) -> Located:
    found = await provider.locate([message_id])
    assert message_id in found, f"{message_id} not found in {provider.account.address}"
    return found[message_id]


class ProviderContract:
    """The contract suite. Subclasses supply the ``harness`` fixture."""

    @pytest.fixture
    def a(self, harness: ContractHarness) -> Provider:
        return harness.provider(harness.accounts[0])

    @pytest.fixture
    def b(self, harness: ContractHarness) -> Provider:
        return harness.provider(harness.accounts[1])

    @pytest.fixture
    def c(self, harness: ContractHarness) -> Provider:
        return harness.provider(harness.accounts[2])

    # -- shape -----------------------------------------------------------------------------

    async def test_is_a_provider(self, harness: ContractHarness, a: Provider) -> None:
        assert isinstance(a, Provider)
        assert isinstance(a.name, str)
        assert a.name
        assert a.account == harness.accounts[0]
        assert isinstance(a.capabilities, frozenset)
        assert all(isinstance(c, Capability) for c in a.capabilities)

    async def test_check_reports_ok(self, a: Provider) -> None:
        report = await a.check()
        assert report.ok is True, report.problems
        assert not report.problems
        assert all(report.checks.values())

    async def test_aclose_is_idempotent(self, harness: ContractHarness) -> None:
        provider = harness.provider(harness.accounts[0])
        await provider.aclose()
        await provider.aclose()
        async with harness.provider(harness.accounts[1]) as entered:  # BaseProvider's
            assert isinstance(entered, Provider)

    # -- sending and locating ----------------------------------------------------------------

    async def test_send_returns_ref_and_recipient_finds_it_in_inbox(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        message, ref = await deliver(harness, a, b.account.address)
        assert isinstance(ref, MessageRef)
        assert ref.message_id == message.message_id
        found = await located(b, message.message_id)
        assert found.placement is mw.Placement.INBOX
        assert found.ref.message_id == message.message_id
        assert (found.sender or "").lower() == a.account.address.lower()
        assert found.subject == message.subject
        assert (found.seen, found.flagged, found.important) == (False, False, False)

    async def test_senders_own_copy_never_counts_as_received(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        since = harness.clock.now() - timedelta(minutes=1)
        message, _ = await deliver(harness, a, b.account.address)
        assert await a.locate([message.message_id]) == {}
        assert message.message_id not in {x.ref.message_id for x in await a.list_recent(since)}
        recent = {x.ref.message_id: x for x in await b.list_recent(since)}
        assert recent[message.message_id].placement is mw.Placement.INBOX

    async def test_list_recent_respects_since(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        message, _ = await deliver(harness, a, b.account.address)
        future = harness.clock.now() + timedelta(days=1)
        assert message.message_id not in {x.ref.message_id for x in await b.list_recent(future)}

    async def test_locate_many_in_one_call_returns_only_found(
        self, harness: ContractHarness, a: Provider, b: Provider, c: Provider
    ) -> None:
        ids = [(await deliver(harness, a, b.account.address))[0].message_id for _ in range(6)]
        elsewhere, _ = await deliver(harness, a, c.account.address)
        unknown = [f"<missing-{n}@nowhere.example>" for n in range(3)]
        query = [*unknown[:1], *ids, elsewhere.message_id, *unknown[1:]]
        found = await b.locate(query)
        assert set(found) == set(ids)
        assert all(found[i].ref.message_id == i for i in ids)
        assert await b.locate([]) == {}

    async def test_recipient_address_is_case_insensitive(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        message, _ = await deliver(harness, a, b.account.address.upper())
        assert (await located(b, message.message_id)).placement is mw.Placement.INBOX

    async def test_unknown_recipient_is_a_permanent_error(
        self, harness: ContractHarness, a: Provider
    ) -> None:
        with pytest.raises(mw.PermanentProviderError) as excinfo:
            await a.send(outgoing(harness, a.account, harness.unknown_address))
        assert excinfo.value.retryable is False

    # -- spam and rescue ---------------------------------------------------------------------

    async def test_tagged_address_lands_in_spam(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        since = harness.clock.now() - timedelta(minutes=1)
        message, _ = await deliver(harness, a, harness.spam_address(b.account))
        assert (await located(b, message.message_id)).placement is mw.Placement.SPAM
        recent = {x.ref.message_id: x for x in await b.list_recent(since)}
        assert recent[message.message_id].placement is mw.Placement.SPAM

    async def test_move_to_inbox_rescues_and_returns_a_working_ref(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        message, _ = await deliver(harness, a, harness.spam_address(b.account))
        old = (await located(b, message.message_id)).ref
        if Capability.MOVE_TO_INBOX not in b.capabilities:
            with pytest.raises(mw.UnsupportedAction):
                await b.move_to_inbox(old)
            return
        new = await b.move_to_inbox(old)
        assert new.message_id == message.message_id
        now = await located(b, message.message_id)
        assert now.placement is mw.Placement.INBOX
        assert now.ref == new
        await b.mark_read(new)
        if Capability.FLAG in b.capabilities:
            await b.flag(new)
        after = await located(b, message.message_id)
        assert after.seen
        assert after.flagged is (Capability.FLAG in b.capabilities)
        assert after.placement is mw.Placement.INBOX

    async def test_stale_ref_still_resolves_after_a_move(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        message, _ = await deliver(harness, a, harness.spam_address(b.account))
        old = (await located(b, message.message_id)).ref
        if Capability.MOVE_TO_INBOX not in b.capabilities:
            return  # covered by the rescue test
        await b.move_to_inbox(old)
        await b.mark_read(old)  # the old handle: re-resolved by Message-ID
        if Capability.MARK_IMPORTANT in b.capabilities:
            await b.mark_important(old)
        after = await located(b, message.message_id)
        assert after.placement is mw.Placement.INBOX
        assert after.seen
        assert after.important is (Capability.MARK_IMPORTANT in b.capabilities)
        with pytest.raises(mw.UnsupportedAction):
            await b.move_to_inbox(old)  # now in the inbox: nothing left to rescue

    async def test_move_to_inbox_only_from_real_spam(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        message, _ = await deliver(harness, a, b.account.address)
        ref = (await located(b, message.message_id)).ref
        with pytest.raises(mw.UnsupportedAction):
            await b.move_to_inbox(ref)
        assert (await located(b, message.message_id)).placement is mw.Placement.INBOX

    # -- engagement --------------------------------------------------------------------------

    async def test_marks_are_idempotent_and_visible(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        message, _ = await deliver(harness, a, b.account.address)
        ref = (await located(b, message.message_id)).ref
        for _ in range(2):
            await b.mark_read(ref)
        assert (await located(b, message.message_id)).seen
        optional = (
            (Capability.MARK_IMPORTANT, b.mark_important, "important"),
            (Capability.FLAG, b.flag, "flagged"),
        )
        for capability, action, attribute in optional:
            if capability in b.capabilities:
                for _ in range(2):
                    await action(ref)
                assert getattr(await located(b, message.message_id), attribute)
            else:
                with pytest.raises(mw.UnsupportedAction):
                    await action(ref)
        final = await located(b, message.message_id)
        assert final.placement is mw.Placement.INBOX
        assert final.seen

    async def test_marks_on_an_unknown_message_raise_a_provider_error(self, b: Provider) -> None:
        ghost = MessageRef("<ghost@nowhere.example>", provider_id="not-a-handle", folder="INBOX")
        with pytest.raises(mw.ProviderError):
            await b.mark_read(ghost)

    async def test_reply_threads_on_both_sides(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        original, sent_ref = await deliver(harness, a, b.account.address, subject="Venue options")
        received = await located(b, original.message_id)
        reply = outgoing(
            harness,
            b.account,
            a.account.address,
            subject="Re: Venue options",
            in_reply_to=original.message_id,
            references=(original.message_id,),
        )
        reply_ref = await b.reply(received.ref, reply)
        await harness.settle()
        assert reply_ref.message_id == reply.message_id
        answer = await located(a, reply.message_id)
        assert answer.placement is mw.Placement.INBOX
        assert answer.subject == "Re: Venue options"
        headers = await harness.headers(a.account, reply.message_id)
        assert headers.in_reply_to == original.message_id
        assert original.message_id in headers.references
        assert headers.subject == "Re: Venue options"
        if Capability.THREADING in a.capabilities:
            assert answer.ref.thread_id is not None
            assert answer.ref.thread_id == sent_ref.thread_id
            assert reply_ref.thread_id == received.ref.thread_id
        # The replier's own Sent copy is not "received" either.
        assert await b.locate([reply.message_id]) == {}

    # -- failures ----------------------------------------------------------------------------

    async def test_injected_faults_surface_as_typed_errors(
        self, harness: ContractHarness, a: Provider, b: Provider
    ) -> None:
        harness.inject(a.account, "send", mw.TransientProviderError("421 try again"))
        with pytest.raises(mw.TransientProviderError) as transient:
            await a.send(outgoing(harness, a.account, b.account.address))
        assert transient.value.retryable is True
        message, _ = await deliver(harness, a, b.account.address)  # the fault was used up
        harness.inject(b.account, "locate", mw.RateLimited("slow down", retry_after=30))
        with pytest.raises(mw.RateLimited) as limited:
            await b.locate([message.message_id])
        assert limited.value.retry_after == 30
        ref = (await located(b, message.message_id)).ref
        harness.inject(b.account, "mark_read", mw.AuthExpired("token revoked"))
        with pytest.raises(mw.AuthExpired):
            await b.mark_read(ref)
        await b.mark_read(ref)
        assert (await located(b, message.message_id)).seen
