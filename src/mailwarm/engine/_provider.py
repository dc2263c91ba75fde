"""The one interface the engine uses to talk to mail: :class:`Provider`.

Every provider (in-memory, SMTP/IMAP, Gmail API, Microsoft Graph, third-party) implements
these async methods for one mailbox and maps its failures onto :mod:`mailwarm._errors`.
:class:`BaseProvider` supplies ``async with``, capability flags and the unsupported-action
default, so a provider module holds only its wire format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from email.message import EmailMessage
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from mailwarm._errors import UnsupportedAction
from mailwarm._models import EmailAccount, Placement
from mailwarm.content import build_message, render_message

__all__ = [
    "BaseProvider",
    "Capability",
    "CheckReport",
    "Located",
    "MessageRef",
    "OutgoingMessage",
    "Provider",
]


class Capability(StrEnum):
    """Optional abilities a provider may lack; the engine skips actions a provider cannot do."""

    MARK_IMPORTANT = "mark_important"
    FLAG = "flag"
    MOVE_TO_INBOX = "move_to_inbox"
    THREADING = "threading"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to send, as structured data; :meth:`to_mime` builds its RFC 5322 form."""

    sender: str
    recipient: str
    subject: str
    text: str
    message_id: str
    date: datetime
    sender_name: str | None = None
    recipient_name: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        """The message as RFC 5322 bytes with CRLF line ends, for SMTP or a raw-MIME API
        (what :meth:`to_mime` builds, written without the stdlib builder's cost)."""
        return render_message(**self._fields())

    def to_mime(self) -> EmailMessage:
        """The complete MIME message (text and HTML parts, threading headers on replies)."""
        return build_message(**self._fields())

    def _fields(self) -> dict[str, Any]:
        # The fields are exactly the keyword arguments of build_message and render_message.
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class MessageRef:
    """Where a message is in one mailbox: its Message-ID plus the provider's own handle
    (an IMAP folder and UID, a Gmail or Graph id). Refresh it after a move."""

    message_id: str
    provider_id: str | None = None
    folder: str | None = None
    thread_id: str | None = None


@dataclass(frozen=True, slots=True)
class Located:
    """A received message found in a mailbox, with where it landed."""

    ref: MessageRef
    placement: Placement
    sender: str | None = None
    subject: str | None = None
    seen: bool = False
    flagged: bool = False
    important: bool = False


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Result of :meth:`Provider.check`: what works, and what does not, in actionable words."""

    ok: bool
    checks: Mapping[str, bool] = field(default_factory=dict)
    problems: Sequence[str] = ()


@runtime_checkable
class Provider(Protocol):
    """One mailbox, as the engine sees it. All methods may raise any
    :class:`~mailwarm.ProviderError`; none may leak a library's own exception."""

    name: str
    account: EmailAccount

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The optional actions this provider supports."""
        ...

    async def send(self, message: OutgoingMessage) -> MessageRef:
        """Send a new message. Not idempotent: the engine's ledger prevents double sends."""
        ...

    async def reply(self, original: MessageRef, message: OutgoingMessage) -> MessageRef:
        """Send ``message`` as a reply in the thread of ``original`` (a received message)."""
        ...

    async def locate(self, message_ids: Sequence[str]) -> dict[str, Located]:
        """Find received messages by Message-ID in one batch; missing ids are left out."""
        ...

    async def mark_read(self, ref: MessageRef) -> None:
        """Mark a received message read. Idempotent."""
        ...

    async def mark_important(self, ref: MessageRef) -> None:
        """Mark a received message important. Idempotent."""
        ...

    async def flag(self, ref: MessageRef) -> None:
        """Star / flag a received message. Idempotent."""
        ...

    async def move_to_inbox(self, ref: MessageRef) -> MessageRef:
        """Move a message from the spam folder to the inbox and return its new reference.
        Raises :class:`~mailwarm.UnsupportedAction` if ``ref`` is not in a real spam folder."""
        ...

    async def list_recent(self, since: datetime) -> list[Located]:
        """Received messages since ``since`` in inbox and spam (never the Sent folder)."""
        ...

    async def check(self) -> CheckReport:
        """Connect and report what works, for a user connecting an account."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...


class BaseProvider:
    """Shared behaviour for providers: ``async with`` and capability-driven defaults."""

    name: str = "base"
    supported: frozenset[Capability] = frozenset()

    def __init__(self, account: EmailAccount) -> None:
        self.account = account

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.account.address}>"

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The optional actions this provider supports."""
        return self.supported

    def _unsupported(self, action: str) -> UnsupportedAction:
        return UnsupportedAction(
            f"{self.name} does not support {action}", provider=self.name, account_id=self.account.id
        )

    async def mark_important(self, ref: MessageRef) -> None:
        """Unsupported unless a provider overrides it."""
        raise self._unsupported("mark_important")

    async def flag(self, ref: MessageRef) -> None:
        """Unsupported unless a provider overrides it."""
        raise self._unsupported("flag")

    async def check(self) -> CheckReport:
        """By default a provider that can be constructed is reported as working."""
        return CheckReport(ok=True)

    async def aclose(self) -> None:
        """Nothing to release by default."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
