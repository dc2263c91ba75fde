"""SMTP submission over aiosmtplib: one reused session per account, failures classified.

aiosmtplib already does STARTTLS, implicit TLS and XOAUTH2 correctly (it answers the 334
error challenge and raises on the 535), so this module only keeps a session open across
sends and tells the caller *where* a failure happened: before the message was handed over
(safe to retry) or after (the outcome is unknown, so resending could duplicate it).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiosmtplib

__all__ = ["SmtpFailure", "SmtpSession"]


@dataclass
class SmtpFailure(Exception):
    """A classified SMTP failure.

    ``kind``: ``auth`` (credentials refused), ``recipient`` (a RCPT refused), ``reply`` (the
    server answered an error code), ``connect`` (could not reach or greet the server),
    ``tls`` (certificate or handshake), ``unknown_outcome`` (lost after the message data
    was sent). ``code`` is the SMTP reply code when there was one.
    """

    kind: str
    message: str
    code: int | None = None

    def __str__(self) -> str:
        return self.message


class SmtpSession:
    """A lazily opened, reused SMTP session (SMTP is sequential: one command at a time)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        context: ssl.SSLContext,
        username: str,
        password: str | None,
        token: Callable[[], Awaitable[str]] | None,
        local_hostname: str,
        timeout: float,
        resolve: Callable[[], Awaitable[list[str]]],
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.context = context
        self.username = username
        self._password = password
        self._token = token
        self.local_hostname = local_hostname
        self.timeout = timeout
        self._resolve = resolve
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.connections_opened = 0

    def __repr__(self) -> str:
        return f"<SmtpSession {self.username} at {self.host}:{self.port}>"

    async def _connect(self) -> aiosmtplib.SMTP:
        addresses = await self._resolve()
        sock = await _open_socket(addresses, self.port, self.timeout)
        client = aiosmtplib.SMTP(
            hostname=self.host,  # for TLS: SNI and certificate name
            sock=sock,
            local_hostname=self.local_hostname,
            timeout=self.timeout,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            tls_context=self.context,
        )
        try:
            await client.connect()
            if self._token is not None:
                token = await self._token()
                await client.auth_xoauth2(self.username, token)
            elif self._password is not None:
                await client.login(self.username, self._password)
        except BaseException:
            client.close()
            raise
        self.connections_opened += 1
        return client

    async def check(self) -> None:
        """Connect and authenticate (raises :class:`SmtpFailure`)."""
        async with self._lock:
            await self._ensure()

    async def _ensure(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        try:
            self._client = await self._connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise SmtpFailure("auth", _reply_text(exc), exc.code) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise SmtpFailure("reply", _reply_text(exc), exc.code) from exc
        except ssl.SSLError as exc:
            raise SmtpFailure("tls", _tls_text(exc)) from exc
        except aiosmtplib.SMTPException as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ssl.SSLError):
                raise SmtpFailure("tls", _tls_text(cause)) from exc
            raise SmtpFailure("connect", str(exc) or type(exc).__name__) from exc
        except (OSError, TimeoutError) as exc:
            raise SmtpFailure("connect", str(exc) or type(exc).__name__) from exc
        return self._client

    async def send(self, sender: str, recipients: Sequence[str], data: bytes) -> None:
        """Send one message; a session broken before the data went out is reopened once."""
        async with self._lock:
            for attempt in (1, 2):
                client = await self._ensure()
                try:
                    await self._transaction(client, sender, recipients, data)
                    return
                except _Stale:
                    self._drop()
                    if attempt == 2:
                        raise SmtpFailure("connect", "the SMTP server closed the session") from None

    async def _transaction(
        self, client: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes
    ) -> None:
        try:
            await client.mail(sender)
            refused = []
            for rcpt in recipients:
                try:
                    await client.rcpt(rcpt)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused.append(exc)
            if refused:
                await _reset(client)
                first = refused[0]
                raise SmtpFailure("recipient", _reply_text(first), first.code)
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise _Stale from exc  # nothing was handed over yet: a new session may retry
        except aiosmtplib.SMTPResponseException as exc:
            await _reset(client)
            if exc.code == 421:
                self._drop()  # 421: the server is closing the session (RFC 5321 3.8)
            raise SmtpFailure("reply", _reply_text(exc), exc.code) from exc
        except (aiosmtplib.SMTPTimeoutError, OSError) as exc:
            self._drop()
            raise SmtpFailure("connect", str(exc) or type(exc).__name__) from exc
        try:
            await client.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:
                self._drop()
            raise SmtpFailure("reply", _reply_text(exc), exc.code) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # The message may be on the server already: only its reply was lost.
            self._drop()
            raise SmtpFailure(
                "unknown_outcome",
                f"the connection to {self.host} broke after the message was sent "
                f"({type(exc).__name__})",
            ) from exc

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    async def aclose(self) -> None:
        """QUIT politely and close; never raises."""
        async with self._lock:
            client, self._client = self._client, None
            if client is not None and client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), 2)
                except Exception:
                    client.close()


class _Stale(Exception):
    """The reused session was found closed before anything was sent."""


async def _reset(client: aiosmtplib.SMTP) -> None:
    try:
        await client.rset()
    except Exception:
        client.close()


async def _open_socket(
    addresses: list[str],
    port: int,
    timeout: float,  # noqa: ASYNC109 - per address
) -> socket.socket:
    """Connect to the first reachable of the already checked addresses (no second lookup,
    so a name cannot resolve to a refused address between the check and the connect)."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (address, port)), timeout)
            return sock
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc if isinstance(exc, OSError) else OSError(f"timed out connecting to {port}")
    raise last or OSError("no address to connect to")


def _reply_text(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


def _tls_text(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
    return f"TLS handshake failed: {exc.reason or exc}"
