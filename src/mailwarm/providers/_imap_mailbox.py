"""Warmup actions on one IMAP mailbox: folders, batched search, flags, moves, appends.

Connections are pooled per account (at most ``max_connections`` open, each reused for many
actions). Folders are found by their RFC 6154 SPECIAL-USE attributes first and by well-known
names only as a fallback. Message handles are ``"<uidvalidity>:<uid>"`` in a folder; a handle
that no longer points at its message (moved by us, the user or a filter) is re-resolved by
Message-ID before the action is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailwarm._models import Placement
from mailwarm.engine import Located, MessageRef
from mailwarm.providers._imap import FetchedMessage, Folder, ImapConnection, ImapError, quote

__all__ = ["Folders", "ImapError", "ImapMailbox", "MessageGone", "NotInSpam", "thread_root"]

# Fallback names when a server lists no SPECIAL-USE attributes (RFC 6154 section 2 names the
# attributes; these are the names the big providers and common servers use).
SPAM_NAMES = ("junk", "spam", "[gmail]/spam", "junk email", "junk e-mail", "bulk", "bulk mail")
SENT_NAMES = ("sent", "sent items", "sent messages", "[gmail]/sent mail", "sent mail")
HEADER_FIELDS = "MESSAGE-ID FROM SUBJECT IN-REPLY-TO REFERENCES"
# Message-IDs per UID SEARCH: an OR chain grows the command line; 40 keeps it near 3 kB.
SEARCH_CHUNK = 40

_parser = email.parser.BytesHeaderParser(policy=email.policy.default)


class MessageGone(Exception):
    """The message is in none of the searched folders."""


class NotInSpam(Exception):
    """A rescue was asked for a message that is not in the spam folder."""


@dataclass(frozen=True, slots=True)
class Folders:
    """The folders warmup uses, as this server names them."""

    inbox: str
    spam: str | None
    sent: str | None


def thread_root(message_id: str, in_reply_to: str | None, references: Sequence[str]) -> str:
    """The thread's first Message-ID (RFC 5322 section 3.6.4: References starts with it)."""
    if references:
        return references[0]
    return in_reply_to or message_id


def _find(folders: Sequence[Folder], attribute: str, names: Sequence[str]) -> str | None:
    for folder in folders:
        if attribute in folder.attributes and "\\noselect" not in folder.attributes:
            return folder.name
    by_name = {f.name.lower(): f.name for f in folders if "\\noselect" not in f.attributes}
    for name in names:
        if name in by_name:
            return by_name[name]
    # Nested under INBOX on some servers ("INBOX.Junk", "INBOX/Spam").
    for folder in folders:
        leaf = folder.name.replace(".", "/").rsplit("/", 1)[-1].lower()
        if leaf in names:
            return folder.name
    return None


def _ids(value: str | None) -> list[str]:
    return [part for part in (value or "").split() if part.startswith("<")]


class ImapMailbox:
    """One account's mailbox over a small pool of :class:`ImapConnection`\\ s."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[ImapConnection]],
        *,
        address: str,
        max_connections: int,
        spam_folder: str | None = None,
        sent_folder: str | None = None,
    ) -> None:
        self._connect = connect
        self.address = address.lower()
        self._idle: list[ImapConnection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._folders: Folders | None = None
        self._spam_override = spam_folder
        self._sent_override = sent_folder
        self.capabilities: frozenset[str] = frozenset()
        self.connections_opened = 0

    # -- connections -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[ImapConnection]:
        """A logged-in connection for one action, returned to the pool afterwards."""
        async with self._slots:
            conn = None
            while self._idle and conn is None:
                candidate = self._idle.pop()
                if candidate.alive:
                    conn = candidate
            if conn is None:
                conn = await self._connect()
                self.connections_opened += 1
                self.capabilities = conn.capabilities
            try:
                yield conn
            except BaseException:
                # After an error the connection's state is unknown: do not reuse it.
                await conn.logout()
                raise
            if conn.alive:
                self._idle.append(conn)

    async def aclose(self) -> None:
        """Log out of every pooled connection."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.logout()

    @property
    def is_gmail(self) -> bool:
        """Gmail's IMAP (labels, its own Sent copies, ``\\Important``)."""
        return "X-GM-EXT-1" in self.capabilities

    async def folders(self, conn: ImapConnection) -> Folders:
        """The inbox, spam and sent folders (listed once per provider)."""
        if self._folders is None:
            listed = await conn.list_folders()
            self._folders = Folders(
                inbox="INBOX",
                spam=self._spam_override or _find(listed, "\\junk", SPAM_NAMES),
                sent=self._sent_override or _find(listed, "\\sent", SENT_NAMES),
            )
        return self._folders

    # -- reading -----------------------------------------------------------------------------

    def _fetch_items(self, conn: ImapConnection) -> str:
        labels = " X-GM-LABELS" if "X-GM-EXT-1" in conn.capabilities else ""
        return f"(UID FLAGS INTERNALDATE{labels} BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])"

    def _located(
        self, folder: str, uidvalidity: int | None, fetched: FetchedMessage, folders: Folders
    ) -> tuple[Located, datetime | None] | None:
        headers = _parser.parsebytes(fetched.header)
        message_id = (headers.get("Message-ID") or "").strip()
        if not message_id:
            return None
        references = _ids(headers.get("References"))
        replied = _ids(headers.get("In-Reply-To"))
        in_reply_to = replied[0] if replied else None
        if folder == folders.spam:
            placement = Placement.SPAM
        elif any("promotions" in label.lower() for label in fetched.labels):
            placement = Placement.PROMOTIONS  # Gmail's tab, as X-GM-LABELS \Category\...
        else:
            placement = Placement.INBOX
        sender = headers.get("From")
        address = sender.addresses[0].addr_spec if sender and sender.addresses else None
        ref = MessageRef(
            message_id,
            provider_id=f"{uidvalidity}:{fetched.uid}",
            folder=folder,
            thread_id=thread_root(message_id, in_reply_to, references),
        )
        important = "$Important" in fetched.flags or "\\Important" in fetched.labels
        located = Located(
            ref,
            placement,
            sender=address,
            subject=str(headers.get("Subject") or "") or None,
            seen="\\Seen" in fetched.flags,
            flagged="\\Flagged" in fetched.flags,
            important=important,
        )
        return located, fetched.internal_date

    def _received_folders(self, folders: Folders) -> list[str]:
        return [f for f in (folders.inbox, folders.spam) if f is not None]

    async def locate(self, message_ids: Sequence[str]) -> dict[str, Located]:
        """Batched search: one UID SEARCH per folder per chunk of Message-IDs."""
        wanted = list(dict.fromkeys(m for m in message_ids if m))
        found: dict[str, Located] = {}
        if not wanted:
            return found
        async with self.connection() as conn:
            folders = await self.folders(conn)
            for folder in self._received_folders(folders):
                missing = [m for m in wanted if m not in found]
                if not missing:
                    break
                await conn.select(folder)
                for start in range(0, len(missing), SEARCH_CHUNK):
                    chunk = missing[start : start + SEARCH_CHUNK]
                    terms = [f"HEADER Message-ID {quote(m)}" for m in chunk]
                    # IMAP's OR takes two keys: OR a (OR b c) ... (RFC 3501 section 6.4.4).
                    criteria = " ".join(["OR"] * (len(terms) - 1) + terms)
                    uids = await conn.uid_search(criteria)
                    for fetched in await conn.uid_fetch(uids, self._fetch_items(conn)):
                        item = self._located(folder, conn.uidvalidity, fetched, folders)
                        # HEADER search is a substring match: keep exact matches only.
                        if item is not None and item[0].ref.message_id in chunk:
                            found.setdefault(item[0].ref.message_id, item[0])
        return found

    async def list_recent(self, since: datetime) -> list[Located]:
        """Received messages (inbox and spam) whose arrival time is ``since`` or later."""
        out: list[Located] = []
        async with self.connection() as conn:
            folders = await self.folders(conn)
            # SINCE compares dates only (RFC 3501 6.4.4): search a day early, then filter.
            day = (since - timedelta(days=1)).strftime("%d-%b-%Y")
            for folder in self._received_folders(folders):
                await conn.select(folder)
                uids = await conn.uid_search(f"SINCE {day}")
                for fetched in await conn.uid_fetch(uids, self._fetch_items(conn)):
                    item = self._located(folder, conn.uidvalidity, fetched, folders)
                    if item is None:
                        continue
                    located, arrived = item
                    if arrived is not None and arrived < since:
                        continue
                    if located.sender and located.sender.lower() == self.address:
                        continue  # our own copy (a note to self) is not warmup received
                    out.append(located)
        return out

    async def in_sent(self, message_id: str) -> bool:
        """Whether a copy with this Message-ID is in the Sent folder."""
        async with self.connection() as conn:
            folders = await self.folders(conn)
            if folders.sent is None:
                return False
            await conn.select(folders.sent)
            return bool(await conn.uid_search(f"HEADER Message-ID {quote(message_id)}"))

    # -- acting on one message ---------------------------------------------------------------

    async def _resolve(self, conn: ImapConnection, ref: MessageRef) -> tuple[str, int]:
        """Select the message's folder and return (folder, uid), re-resolving a stale ref."""
        folders = await self.folders(conn)
        if ref.folder and ref.provider_id and ":" in ref.provider_id:
            validity, _, uid = ref.provider_id.partition(":")
            await conn.select(ref.folder)
            if str(conn.uidvalidity) == validity and uid.isdigit():
                fetched = await conn.uid_fetch(
                    [int(uid)], "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
                )
                for item in fetched:
                    header = _parser.parsebytes(item.header).get("Message-ID", "").strip()
                    if header == ref.message_id:
                        return ref.folder, int(uid)
        for folder in self._received_folders(folders):
            await conn.select(folder)
            uids = await conn.uid_search(f"HEADER Message-ID {quote(ref.message_id)}")
            if uids:
                return folder, uids[0]
        raise MessageGone(ref.message_id)

    async def store(self, ref: MessageRef, flags: str, *, labels: bool = False) -> None:
        """Add ``flags`` (or Gmail labels) to the message. Idempotent."""
        async with self.connection() as conn:
            _, uid = await self._resolve(conn, ref)
            item = "+X-GM-LABELS" if labels else "+FLAGS"
            touched = await conn.uid_store([uid], item, flags)
            if uid in touched:
                return
            # No FETCH back: either nothing changed (Dovecot stays silent when the flags were
            # already set) or the message vanished since the resolve (a concurrent move).
            if await conn.uid_fetch([uid], "(UID FLAGS)"):
                return
            _, uid = await self._resolve(conn, MessageRef(ref.message_id))
            await conn.uid_store([uid], item, flags)

    async def keyword_allowed(self, keyword: str) -> bool:
        """Whether the server keeps a custom keyword such as ``$Important`` (RFC 8457)."""
        async with self.connection() as conn:
            folders = await self.folders(conn)
            await conn.select(folders.inbox)
            return "\\*" in conn.permanent_flags or keyword in conn.permanent_flags

    async def move_to_inbox(self, ref: MessageRef) -> MessageRef:
        """Move a message out of the real spam folder into the inbox; return its new ref."""
        async with self.connection() as conn:
            folders = await self.folders(conn)
            folder, uid = await self._resolve(conn, ref)
            if folders.spam is None or folder != folders.spam:
                raise NotInSpam(folder)
            if "MOVE" in conn.capabilities:
                moved = await conn.uid_move(uid, folders.inbox)
            else:
                moved = await self._copy_delete(conn, uid, folders.inbox)
            if moved is not None:
                validity, new_uid = moved
            else:
                await conn.select(folders.inbox)
                uids = await conn.uid_search(f"HEADER Message-ID {quote(ref.message_id)}")
                if not uids:
                    raise MessageGone(ref.message_id)
                validity, new_uid = conn.uidvalidity or 0, uids[-1]
            return MessageRef(
                ref.message_id,
                provider_id=f"{validity}:{new_uid}",
                folder=folders.inbox,
                thread_id=ref.thread_id,
            )

    async def _copy_delete(
        self, conn: ImapConnection, uid: int, destination: str
    ) -> tuple[int, int] | None:
        """MOVE's fallback for servers without RFC 6851: COPY, flag \\Deleted, expunge it."""
        copied = await conn.uid_copy(uid, destination)
        await conn.uid_store([uid], "+FLAGS.SILENT", "(\\Deleted)")
        if "UIDPLUS" in conn.capabilities:
            await conn.expunge(uid)  # removes only this message (RFC 4315 section 2.1)
        else:
            # A plain EXPUNGE removes every \Deleted message of the folder: only safe when
            # ours is the only one, otherwise leave it flagged for the user's client.
            deleted = await conn.uid_search("DELETED")
            if deleted == [uid]:
                await conn.expunge()
        return copied

    async def append(self, folder_kind: str, data: bytes, flags: str) -> str | None:
        """APPEND to the sent folder; returns the folder name (``None`` if there is none)."""
        async with self.connection() as conn:
            folders = await self.folders(conn)
            folder = folders.sent if folder_kind == "sent" else folders.inbox
            if folder is None:
                return None
            await conn.append(folder, data, flags)
            return folder

    async def thread(self, folder: str) -> str:
        """``UID THREAD REFERENCES UTF-8 ALL`` (RFC 5256) of a folder, as the server says it."""
        async with self.connection() as conn:
            await conn.select(folder)
            lines = await conn.command("THREAD", "REFERENCES", "UTF-8", "ALL", prefix="UID")
            return " ".join(bytes(line).decode() for line in lines[:-1])

    async def probe(self) -> Folders:
        """Log in and list folders (for ``check``)."""
        async with self.connection() as conn:
            return await self.folders(conn)
