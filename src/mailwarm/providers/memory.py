"""An in-memory mail network: mailboxes with folders, threading, flags and pluggable placement.

It behaves like a small mail system, not a stub: a send stores the sender's Sent copy and
delivers a separate copy into the recipient's inbox or spam folder (decided by a placement
policy), moves change a message's folder and handle, and faults can be injected per mailbox
and action. The lab runs the real engine on it; the contract suite holds it to the same rules
as every other provider.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mailwarm._clock import Clock
from mailwarm._errors import PermanentProviderError, ProviderError, UnsupportedAction
from mailwarm._models import EmailAccount, Placement
from mailwarm.engine import (
    BaseProvider,
    Capability,
    CheckReport,
    Located,
    MessageRef,
    OutgoingMessage,
)

__all__ = ["Delivery", "MailEvent", "MemoryNetwork", "MemoryProvider", "StoredMessage"]

INBOX, SPAM, SENT = "INBOX", "Junk", "Sent"
SEEN, FLAGGED, IMPORTANT = "\\Seen", "\\Flagged", "$Important"


@dataclass(slots=True)
class StoredMessage:
    """One copy of a message in one mailbox folder."""

    uid: int
    folder: str
    message_id: str
    sender: str
    recipient: str
    subject: str
    text: str
    date: datetime
    thread_id: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    flags: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a placement policy sees: one message on its way to one recipient."""

    sender: str
    recipient: str
    message: OutgoingMessage
    at: datetime


@dataclass(frozen=True, slots=True)
class MailEvent:
    """Something a mailbox did, for observers such as the lab's reputation model."""

    kind: str  # delivered, read, flagged, important, rescued, replied
    mailbox: str
    sender: str
    message_id: str
    at: datetime
    placement: Placement | None = None


PlacementPolicy = Callable[[Delivery], Placement]


def tag_policy(delivery: Delivery) -> Placement:
    """Default placement: inbox, except ``user+junk@...`` and ``user+spam@...`` go to spam."""
    local = delivery.recipient.split("@", 1)[0].lower()
    tag = local.partition("+")[2]
    return Placement.SPAM if tag in ("junk", "spam") else Placement.INBOX


class _Mailbox:
    def __init__(self, address: str) -> None:
        self.address = address
        self.messages: dict[int, StoredMessage] = {}
        self.by_message_id: dict[str, list[int]] = {}
        self.uids = itertools.count(1)

    def store(self, message: StoredMessage) -> None:
        self.messages[message.uid] = message
        self.by_message_id.setdefault(message.message_id, []).append(message.uid)

    def folder(self, name: str) -> list[StoredMessage]:
        return [m for m in self.messages.values() if m.folder == name]


class MemoryNetwork:
    """Mailboxes by address, with a placement policy and fault injection.

    ``placement`` decides inbox or spam for each delivery (default :func:`tag_policy`).
    ``observers`` are called with every :class:`MailEvent`. Mail to ``user+tag@domain`` reaches
    the mailbox ``user@domain`` unless a mailbox with the full address exists.
    """

    def __init__(self, clock: Clock, *, placement: PlacementPolicy = tag_policy) -> None:
        self.clock = clock
        self.placement = placement
        self.observers: list[Callable[[MailEvent], None]] = []
        self._boxes: dict[str, _Mailbox] = {}
        self._faults: dict[tuple[str, str], list[ProviderError]] = {}

    def add_mailbox(self, address: str) -> None:
        """Create an empty mailbox (idempotent)."""
        self._boxes.setdefault(address.lower(), _Mailbox(address.lower()))

    def add_accounts(self, accounts: Iterable[EmailAccount]) -> None:
        """Create a mailbox for every account of a pool (idempotent)."""
        for account in accounts:
            self.add_mailbox(account.address)

    def has_mailbox(self, address: str) -> bool:
        """Whether ``address`` exists on this network (``user+tag@...`` reaches ``user@...``)."""
        return self._resolve(address) in self._boxes

    def _resolve(self, address: str) -> str:
        """The mailbox key for ``address``: itself if it exists, else without its ``+tag``
        (subaddressing, RFC 5233), as real mail systems deliver ``user+tag@`` to ``user@``."""
        address = address.lower()
        if address in self._boxes:
            return address
        local, at, domain = address.rpartition("@")
        base = local.partition("+")[0]
        return f"{base}{at}{domain}" if at and base else address

    def provider(self, account: EmailAccount) -> MemoryProvider:
        """A provider for ``account``'s mailbox (created if missing)."""
        self.add_mailbox(account.address)
        return MemoryProvider(account, self)

    def fail_next(self, address: str, action: str, error: ProviderError, times: int = 1) -> None:
        """Make the next ``times`` calls of ``action`` on ``address``'s mailbox raise ``error``."""
        self._faults.setdefault((address.lower(), action), []).extend([error] * times)

    def messages(self, address: str, folder: str | None = None) -> list[StoredMessage]:
        """Messages in a mailbox (all folders, or one), for tests and inspection."""
        box = self._box(address)
        items = box.messages.values() if folder is None else box.folder(folder)
        return sorted(items, key=lambda m: m.uid)

    def _box(self, address: str) -> _Mailbox:
        try:
            return self._boxes[self._resolve(address)]
        except KeyError:
            raise PermanentProviderError(
                f"no mailbox {address} on this network", provider="memory"
            ) from None

    def _maybe_fail(self, address: str, action: str) -> None:
        queue = self._faults.get((address.lower(), action))
        if queue:
            raise queue.pop(0)

    def _emit(self, event: MailEvent) -> None:
        for observer in self.observers:
            observer(event)

    def _thread_of(self, box: _Mailbox, message: OutgoingMessage) -> str:
        for parent in (message.in_reply_to, *reversed(message.references)):
            if parent and parent in box.by_message_id:
                return box.messages[box.by_message_id[parent][0]].thread_id
        return message.message_id

    def _deliver(self, message: OutgoingMessage) -> MessageRef:
        sender_box = self._box(message.sender)
        if not self.has_mailbox(message.recipient):
            raise PermanentProviderError(
                f"recipient {message.recipient} does not exist (550 5.1.1)", provider="memory"
            )
        now = self.clock.now()
        recipient_box = self._box(message.recipient)
        placement = self.placement(Delivery(message.sender, message.recipient, message, now))
        copies: tuple[tuple[_Mailbox, str, set[str]], ...] = (
            (sender_box, SENT, {SEEN}),
            (recipient_box, SPAM if placement is Placement.SPAM else INBOX, set()),
        )
        sent_ref: MessageRef | None = None
        for box, folder, flags in copies:
            stored = StoredMessage(
                uid=next(box.uids),
                folder=folder,
                message_id=message.message_id,
                sender=message.sender.lower(),
                recipient=message.recipient.lower(),
                subject=message.subject,
                text=message.text,
                date=message.date,
                thread_id=self._thread_of(box, message),
                in_reply_to=message.in_reply_to,
                references=message.references,
                flags=flags,
            )
            box.store(stored)
            if box is sender_box and sent_ref is None:
                sent_ref = MessageRef(message.message_id, str(stored.uid), SENT, stored.thread_id)
        self._emit(
            MailEvent(
                "delivered",
                recipient_box.address,
                message.sender.lower(),
                message.message_id,
                now,
                placement,
            )
        )
        assert sent_ref is not None
        return sent_ref


def _placement(folder: str) -> Placement:
    return {INBOX: Placement.INBOX, SPAM: Placement.SPAM}.get(folder, Placement.UNKNOWN)


def _located(m: StoredMessage) -> Located:
    return Located(
        MessageRef(m.message_id, str(m.uid), m.folder, m.thread_id),
        _placement(m.folder),
        sender=m.sender,
        subject=m.subject,
        seen=SEEN in m.flags,
        flagged=FLAGGED in m.flags,
        important=IMPORTANT in m.flags,
    )


class MemoryProvider(BaseProvider):
    """A mailbox on a :class:`MemoryNetwork`."""

    name = "memory"
    supported = frozenset(
        {Capability.MARK_IMPORTANT, Capability.FLAG, Capability.MOVE_TO_INBOX, Capability.THREADING}
    )

    def __init__(self, account: EmailAccount, network: MemoryNetwork) -> None:
        super().__init__(account)
        self.network = network
        self.address = account.address.lower()
        self.closed = False

    def _received(self, ref: MessageRef) -> StoredMessage:
        box = self.network._box(self.address)
        if ref.provider_id is not None and ref.provider_id.isdigit():
            found = box.messages.get(int(ref.provider_id))
            if found is not None and found.message_id == ref.message_id and found.folder != SENT:
                return found
        # A stale handle (the message moved): re-resolve by Message-ID, never the Sent copy.
        for uid in box.by_message_id.get(ref.message_id, []):
            candidate = box.messages[uid]
            if candidate.folder != SENT:
                return candidate
        raise PermanentProviderError(
            f"message {ref.message_id} is not in this mailbox",
            provider=self.name,
            account_id=self.account.id,
        )

    def _event(self, kind: str, stored: StoredMessage) -> None:
        self.network._emit(
            MailEvent(
                kind, self.address, stored.sender, stored.message_id, self.network.clock.now()
            )
        )

    async def send(self, message: OutgoingMessage) -> MessageRef:
        """Deliver to the recipient's mailbox and keep a copy in Sent."""
        self.network._maybe_fail(self.address, "send")
        return self.network._deliver(message)

    async def reply(self, original: MessageRef, message: OutgoingMessage) -> MessageRef:
        """Send ``message`` in the thread of the received message ``original``."""
        self.network._maybe_fail(self.address, "reply")
        stored = self._received(original)
        if message.in_reply_to != stored.message_id:
            raise PermanentProviderError(
                "a reply must carry In-Reply-To of the original", provider=self.name
            )
        ref = self.network._deliver(message)
        self._event("replied", stored)
        return ref

    async def locate(self, message_ids: Sequence[str]) -> dict[str, Located]:
        """Find received copies by Message-ID (the Sent copy never counts as received)."""
        self.network._maybe_fail(self.address, "locate")
        box = self.network._box(self.address)
        found: dict[str, Located] = {}
        for message_id in message_ids:
            for uid in box.by_message_id.get(message_id, []):
                m = box.messages[uid]
                if m.folder == SENT:
                    continue
                found[message_id] = _located(m)
                break
        return found

    async def mark_read(self, ref: MessageRef) -> None:
        """Add ``\\Seen``."""
        self.network._maybe_fail(self.address, "mark_read")
        stored = self._received(ref)
        if SEEN not in stored.flags:
            stored.flags.add(SEEN)
            self._event("read", stored)

    async def mark_important(self, ref: MessageRef) -> None:
        """Add the ``$Important`` keyword."""
        self.network._maybe_fail(self.address, "mark_important")
        stored = self._received(ref)
        if IMPORTANT not in stored.flags:
            stored.flags.add(IMPORTANT)
            self._event("important", stored)

    async def flag(self, ref: MessageRef) -> None:
        """Add ``\\Flagged`` (a star)."""
        self.network._maybe_fail(self.address, "flag")
        stored = self._received(ref)
        if FLAGGED not in stored.flags:
            stored.flags.add(FLAGGED)
            self._event("flagged", stored)

    async def move_to_inbox(self, ref: MessageRef) -> MessageRef:
        """Move from Junk to INBOX under a new UID, like IMAP MOVE; only from a real spam folder."""
        self.network._maybe_fail(self.address, "move_to_inbox")
        stored = self._received(ref)
        if stored.folder != SPAM:
            raise UnsupportedAction(
                f"message {ref.message_id} is in {stored.folder}, not in spam: nothing to rescue",
                provider=self.name,
                account_id=self.account.id,
            )
        box = self.network._box(self.address)
        del box.messages[stored.uid]
        box.by_message_id[stored.message_id].remove(stored.uid)
        stored.uid = next(box.uids)
        stored.folder = INBOX
        box.store(stored)
        self._event("rescued", stored)
        return MessageRef(stored.message_id, str(stored.uid), INBOX, stored.thread_id)

    async def list_recent(self, since: datetime) -> list[Located]:
        """Received messages in INBOX and Junk dated at or after ``since``."""
        self.network._maybe_fail(self.address, "list_recent")
        box = self.network._box(self.address)
        return [
            _located(m)
            for m in sorted(box.messages.values(), key=lambda m: m.uid)
            if m.folder in (INBOX, SPAM) and m.date >= since
        ]

    async def check(self) -> CheckReport:
        """The mailbox exists on the network."""
        ok = self.network.has_mailbox(self.address)
        return CheckReport(
            ok=ok, checks={"mailbox": ok}, problems=() if ok else (f"no mailbox {self.address}",)
        )

    async def aclose(self) -> None:
        """Mark closed (idempotent)."""
        self.closed = True
