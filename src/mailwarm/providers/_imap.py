"""IMAP over aioimaplib, with its known gaps fixed in a small subclass of its protocol.

aioimaplib (2.0) gets most of IMAP4rev1 right, but three gaps bite a warmup system:

1. No STARTTLS (its issue #1): :meth:`ImapConnection.open` sends STARTTLS and upgrades the
   transport with ``loop.start_tls``, then asks for CAPABILITY again (RFC 3501 section 6.2.1:
   capabilities learned before TLS must be discarded).
2. A failed XOAUTH2 login hangs until the command timeout: the server sends a ``+`` error
   challenge (Google's XOAUTH2 protocol page; Dovecot does the same) that aioimaplib never
   answers. :class:`_Protocol` answers it with an empty line, so the server sends its tagged
   ``NO`` at once.
3. IDLE (and any pending command) hangs when the server drops the connection (its issue
   #110): :class:`_Protocol` fails every pending command when the connection is lost.

Everything else (responses, literals, tags) is aioimaplib's.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aioimaplib

__all__ = ["FetchedMessage", "ImapConnection", "ImapError", "quote"]

_FETCH_START = re.compile(rb"^(\d+) FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_LABELS = re.compile(rb"\bX-GM-LABELS \(((?:[^()\"]|\"(?:[^\"\\]|\\.)*\")*)\)")
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_COPYUID = re.compile(rb"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]")
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_LIST = re.compile(rb'^\(([^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (.+)$')
_RESPONSE_CODE = re.compile(r"\[([A-Z-]+)")


class ImapError(Exception):
    """A command failed: ``result`` is the server's NO/BAD (or ``BYE``/``TIMEOUT``/``LOST``),
    ``code`` its response code (``AUTHENTICATIONFAILED``, ``TRYCREATE``...) when it gave one."""

    def __init__(self, command: str, result: str, text: str) -> None:
        self.command = command
        self.result = result
        self.text = text
        match = _RESPONSE_CODE.search(text)
        self.code = match.group(1) if match else None
        super().__init__(f"IMAP {command} failed: {result} {text}".strip())


def quote(value: str) -> str:
    """An IMAP quoted string (RFC 3501 section 4.3); CR, LF and NUL are refused."""
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("IMAP strings cannot contain CR, LF or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(line: bytes | bytearray) -> str:
    return bytes(line).decode("utf-8", "replace")


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol with the XOAUTH2 and lost-connection fixes (module docstring)."""

    sasl_error: Any = None
    lost = False

    def _continuation(self, line: bytes) -> None:
        command = self.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE":
            payload = line[1:].strip()
            try:
                self.sasl_error = json.loads(base64.b64decode(payload)) if payload else None
            except ValueError:
                self.sasl_error = _text(payload)
            # RFC 7628 section 3.2.3 / Google's XOAUTH2 page: answer the error challenge with
            # an empty response; the server then completes the command with NO.
            self.transport.write(b"\r\n")
            return
        super()._continuation(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        pending = [self.pending_sync_command, *self.pending_async_commands.values()]
        for command in pending:
            if command is not None and not command._event.is_set():
                command._exception = aioimaplib.Abort("connection lost")
                command.close(b"connection lost", "LOST")
        self._idle_event.set()  # wake an idle_start() waiting for "+ idling"
        with contextlib.suppress(Exception):
            self.idle_queue.put_nowait([b"connection lost"])
        super().connection_lost(exc)


@dataclass(slots=True)
class FetchedMessage:
    """One message's FETCH data."""

    uid: int
    flags: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    internal_date: datetime | None = None
    header: bytes = b""


@dataclass
class Folder:
    """A mailbox from LIST, with its RFC 6154 special-use attributes."""

    name: str
    attributes: frozenset[str] = field(default_factory=frozenset)


def parse_fetch(lines: Iterable[bytes | bytearray]) -> list[FetchedMessage]:
    """FETCH responses as aioimaplib returns them: a line, its literal, a closing line."""
    records: list[tuple[bytearray, bytes]] = []
    for line in lines:
        if isinstance(line, bytes) and _FETCH_START.match(line):
            records.append((bytearray(line), b""))
        elif records:
            text, literal = records[-1]
            if isinstance(line, bytearray) and not literal:
                records[-1] = (text, bytes(line))
            else:
                text.extend(b" " + bytes(line))
    out = []
    for text, literal in records:
        uid = _UID.search(text)
        if uid is None:
            continue
        flags = _FLAGS.search(text)
        labels = _LABELS.search(text)
        date = _INTERNALDATE.search(text)
        internal = None
        if date is not None:
            with contextlib.suppress(TypeError, ValueError):
                internal = datetime.strptime(date.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
        out.append(
            FetchedMessage(
                uid=int(uid.group(1)),
                flags=frozenset(_text(flags.group(1)).split()) if flags else frozenset(),
                labels=frozenset(_split_labels(_text(labels.group(1)))) if labels else frozenset(),
                internal_date=internal,
                header=literal,
            )
        )
    return out


def _split_labels(value: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', value)]


class ImapConnection:
    """One authenticated-or-not IMAP connection with the few commands warmup needs.

    Every command has a timeout; a failed command raises :class:`ImapError`, a lost
    connection :class:`ConnectionError`, a timeout :class:`TimeoutError`.
    """

    def __init__(self, protocol: _Protocol, timeout: float) -> None:
        self.protocol = protocol
        self.timeout = timeout
        self.selected: str | None = None
        self.uidvalidity: int | None = None
        self.permanent_flags: frozenset[str] = frozenset()

    # -- connecting --------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        address: str,
        port: int,
        *,
        security: str,
        context: ssl.SSLContext | None,
        server_hostname: str,
        timeout: float,  # noqa: ASYNC109 - applies to each step, not one deadline
    ) -> ImapConnection:
        """Connect to ``address`` (an already checked IP) and read the greeting; with
        ``security`` ``"tls"`` (implicit TLS), ``"starttls"`` or ``"none"``."""
        loop = asyncio.get_running_loop()
        protocol = _Protocol(loop)
        tls = context if security == "tls" else None
        await asyncio.wait_for(
            loop.create_connection(
                lambda: protocol,
                address,
                port,
                ssl=tls,
                server_hostname=server_hostname if tls is not None else None,
            ),
            timeout,
        )
        connection = cls(protocol, timeout)
        await asyncio.wait_for(protocol.wait("NONAUTH|AUTH"), timeout)
        if security == "starttls":
            await connection._starttls(context or ssl.create_default_context(), server_hostname)
        return connection

    async def _starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        if "STARTTLS" not in self.capabilities:
            raise ImapError("STARTTLS", "NO", "the server does not offer STARTTLS")
        await self.command("STARTTLS")
        loop = asyncio.get_running_loop()
        transport = await asyncio.wait_for(
            loop.start_tls(
                self.protocol.transport, self.protocol, context, server_hostname=server_hostname
            ),
            self.timeout,
        )
        self.protocol.transport = transport
        await self.refresh_capabilities()

    @property
    def capabilities(self) -> frozenset[str]:
        """What the server said it can do (upper-case)."""
        return frozenset(c.upper() for c in self.protocol.capabilities)

    async def refresh_capabilities(self) -> None:
        """Ask again (after STARTTLS or login, when they may change)."""
        await asyncio.wait_for(self.protocol.capability(), self.timeout)

    async def login(self, user: str, password: str) -> None:
        """LOGIN (the password is scrubbed from aioimaplib's debug log)."""
        if "LOGINDISABLED" in self.capabilities:
            # RFC 3501 6.2.3: the server refuses LOGIN here; do not send the password at all.
            raise ImapError("LOGIN", "NO", "[PRIVACYREQUIRED] LOGINDISABLED before TLS")
        response = await asyncio.wait_for(self.protocol.login(user, password), self.timeout)
        self._check("LOGIN", response)
        await self.refresh_capabilities()

    async def xoauth2(self, user: str, token: str) -> None:
        """AUTHENTICATE XOAUTH2 (fails fast thanks to the continuation fix)."""
        response = await asyncio.wait_for(self.protocol.xoauth2(user, token), self.timeout)
        self._check("AUTHENTICATE", response)
        await self.refresh_capabilities()

    async def logout(self) -> None:
        """LOGOUT and close; never raises."""
        with contextlib.suppress(Exception):
            if not self.protocol.lost:
                await asyncio.wait_for(self.protocol.logout(), 2)
        with contextlib.suppress(Exception):
            self.protocol.transport.close()

    @property
    def alive(self) -> bool:
        """Whether the connection is still usable."""
        return not self.protocol.lost and self.protocol.state != aioimaplib.LOGOUT

    # -- commands ----------------------------------------------------------------------------

    def _check(self, name: str, response: Any) -> None:
        if response.result != "OK":
            text = _text(response.lines[-1]) if response.lines else ""
            raise ImapError(name, response.result, text)

    async def command(
        self, name: str, *args: str, prefix: str | None = None, untagged: str | None = None
    ) -> list[bytes]:
        """Run one command; return its response lines (the last one is the tagged text)."""
        if self.protocol.lost:
            raise ConnectionError("the IMAP connection was lost")
        protocol = self.protocol
        command = aioimaplib.Command(
            name,
            protocol.new_tag(),
            *args,
            prefix=prefix,
            untagged_resp_name=untagged,
            loop=protocol.loop,
        )
        try:
            response = await asyncio.wait_for(protocol.execute(command), self.timeout)
        except aioimaplib.Abort as exc:
            if protocol.lost:
                raise ConnectionError("the IMAP connection was lost") from exc
            raise ImapError(name, "ABORT", str(exc)) from exc
        self._check(f"{prefix + ' ' if prefix else ''}{name}", response)
        return list(response.lines)

    async def list_folders(self) -> list[Folder]:
        """Every mailbox with its attributes (RFC 6154 ``\\Junk``, ``\\Sent``...)."""
        lines = await self.command("LIST", '""', '"*"')
        folders = []
        for line in lines[:-1]:
            match = _LIST.match(bytes(line))
            if match is None:
                continue
            name = _text(match.group(2))
            if name.startswith('"') and name.endswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            attributes = frozenset(a.lower() for a in _text(match.group(1)).split())
            folders.append(Folder(name, attributes))
        return folders

    async def select(self, mailbox: str) -> None:
        """SELECT a mailbox (skipped when already selected), noting UIDVALIDITY."""
        if self.selected == mailbox:
            return
        self.selected = None
        if self.protocol.lost:
            raise ConnectionError("the IMAP connection was lost")
        # aioimaplib's own select(): it moves the protocol to the SELECTED state, without
        # which it refuses SEARCH and FETCH.
        response = await asyncio.wait_for(self.protocol.select(quote(mailbox)), self.timeout)
        self._check("SELECT", response)
        lines = list(response.lines)
        self.selected = mailbox
        self.uidvalidity = None
        for line in lines:
            text = _text(line)
            if match := re.search(r"\[UIDVALIDITY (\d+)\]", text):
                self.uidvalidity = int(match.group(1))
            if match := re.search(r"\[PERMANENTFLAGS \(([^)]*)\)\]", text):
                self.permanent_flags = frozenset(match.group(1).split())

    async def uid_search(self, criteria: str) -> list[int]:
        """UID SEARCH with raw criteria (callers quote their strings)."""
        lines = await self.command("SEARCH", criteria, prefix="UID")
        found: list[int] = []
        for line in lines[:-1]:
            # aioimaplib strips the leading "SEARCH" keyword: the line is just the numbers.
            words = _text(line).replace("SEARCH", " ").split()
            found.extend(int(w) for w in words if w.isdigit())
        return found

    async def uid_fetch(self, uids: Sequence[int], items: str) -> list[FetchedMessage]:
        """UID FETCH ``items`` for ``uids``."""
        if not uids:
            return []
        lines = await self.command("FETCH", _uid_set(uids), items, prefix="UID", untagged="FETCH")
        return parse_fetch(lines[:-1])

    async def uid_store(self, uids: Sequence[int], operation: str, flags: str) -> set[int]:
        """UID STORE; returns the UIDs the server reported (so a vanished UID shows)."""
        lines = await self.command(
            "STORE", _uid_set(uids), operation, flags, prefix="UID", untagged="FETCH"
        )
        return {m.uid for m in parse_fetch(lines[:-1])}

    async def uid_move(self, uid: int, mailbox: str) -> tuple[int, int] | None:
        """UID MOVE (RFC 6851); the destination's (UIDVALIDITY, UID) from COPYUID
        (RFC 4315) when given."""
        lines = await self.command("MOVE", str(uid), quote(mailbox), prefix="UID")
        return _copyuid(lines)

    async def uid_copy(self, uid: int, mailbox: str) -> tuple[int, int] | None:
        """UID COPY; the destination's (UIDVALIDITY, UID) when the server has UIDPLUS."""
        lines = await self.command("COPY", str(uid), quote(mailbox), prefix="UID")
        return _copyuid(lines)

    async def expunge(self, uid: int | None = None) -> None:
        """UID EXPUNGE one UID (RFC 4315), or a plain EXPUNGE."""
        if uid is None:
            await self.command("EXPUNGE")
        else:
            await self.command("EXPUNGE", str(uid), prefix="UID")

    async def append(self, mailbox: str, message: bytes, flags: str = "") -> tuple[int, int] | None:
        """APPEND a message; its (UIDVALIDITY, UID) from APPENDUID with UIDPLUS."""
        response = await asyncio.wait_for(
            self.protocol.append(message, quote(mailbox), flags or None), self.timeout
        )
        self._check("APPEND", response)
        for line in response.lines:
            if match := _APPENDUID.search(bytes(line)):
                return int(match.group(1)), int(match.group(2))
        return None

    async def idle(self, timeout: float) -> list[bytes]:  # noqa: ASYNC109
        """IDLE (RFC 2177) until the server pushes something or ``timeout`` passes.

        Never hangs: a dropped connection ends it (the lost-connection fix), and the wait for
        the ``+ idling`` continuation has the command timeout."""
        protocol = self.protocol
        if "IDLE" not in self.capabilities:
            raise ImapError("IDLE", "NO", "the server does not support IDLE")
        idle = asyncio.ensure_future(protocol.idle())
        try:
            await asyncio.wait_for(protocol.wait_for_idle_response(), self.timeout)
            if protocol.lost:
                raise ConnectionError("the IMAP connection was lost")
            try:
                pushed = await asyncio.wait_for(protocol.idle_queue.get(), timeout)
            except TimeoutError:
                pushed = []
            if protocol.lost:
                raise ConnectionError("the IMAP connection was lost")
            protocol.idle_done()
            await asyncio.wait_for(idle, self.timeout)
            return [bytes(p) for p in pushed]
        finally:
            if not idle.done():
                idle.cancel()
                with contextlib.suppress(BaseException):
                    await idle


def _uid_set(uids: Sequence[int]) -> str:
    return ",".join(str(u) for u in uids)


def _copyuid(lines: Iterable[bytes | bytearray]) -> tuple[int, int] | None:
    for line in lines:
        match = _COPYUID.search(bytes(line))
        if match is not None:
            new = match.group(3).decode()
            return int(match.group(1)), int(new.split(",")[0].split(":")[0])
    return None


def parse_date(value: str | None) -> datetime | None:
    """An RFC 5322 Date header as an aware datetime, or ``None``."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
