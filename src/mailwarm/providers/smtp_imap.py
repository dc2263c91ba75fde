"""Any mailbox reachable over SMTP (sending) and IMAP (reading): ``provider = "smtp"``.

Sends go out over one reused SMTP session per account (aiosmtplib: STARTTLS, implicit TLS,
AUTH PLAIN/LOGIN or XOAUTH2 with a token callback) and are appended to the Sent folder, as a
mail client would. Everything on the receiving side happens over IMAP (aioimaplib, with our
fixes in ``_imap.py``): batched ``UID SEARCH`` by Message-ID, flags and ``$Important``,
``UID MOVE`` out of the RFC 6154 ``\\Junk`` folder (COPY + ``\\Deleted`` + ``UID EXPUNGE``
where MOVE is missing), Gmail's ``X-GM-LABELS`` where offered.

Needs the ``smtp`` extra: ``pip install "mailwarm[smtp]"``.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mailwarm._errors import (
    AuthExpired,
    ConfigurationError,
    DeliveryUnknown,
    PermanentProviderError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
    UnsupportedAction,
)
from mailwarm._extras import require
from mailwarm._json import JsonBool, JsonFloat, JsonInt, Port
from mailwarm._models import Credentials, EmailAccount
from mailwarm.engine import (
    BaseProvider,
    Capability,
    CheckReport,
    Located,
    MessageRef,
    OutgoingMessage,
)
from mailwarm.providers._context import ProviderContext
from mailwarm.providers._hosts import check_host, is_public_address
from mailwarm.providers._retry import RetryPolicy, with_retries

if TYPE_CHECKING:
    from mailwarm.providers._imap import ImapConnection
    from mailwarm.providers._imap_mailbox import ImapMailbox
    from mailwarm.providers._smtp import SmtpSession

__all__ = ["Security", "SmtpImapProvider", "SmtpImapSettings", "default_hosts"]

T = TypeVar("T")
TokenProvider = Callable[[], Awaitable[str]]


class Security(StrEnum):
    """How a connection is protected: implicit TLS, STARTTLS, or nothing (loopback only)."""

    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"


DEFAULT_PORTS = {
    "smtp": {Security.TLS: 465, Security.STARTTLS: 587, Security.NONE: 25},
    "imap": {Security.TLS: 993, Security.STARTTLS: 143, Security.NONE: 143},
}

# Submission and IMAP hosts of the big consumer providers (their help pages), so that a
# pool file may give just an address and a password.
_WELL_KNOWN = {
    "gmail.com": ("smtp.gmail.com", "imap.gmail.com"),
    "googlemail.com": ("smtp.gmail.com", "imap.gmail.com"),
    "outlook.com": ("smtp-mail.outlook.com", "outlook.office365.com"),
    "hotmail.com": ("smtp-mail.outlook.com", "outlook.office365.com"),
    "live.com": ("smtp-mail.outlook.com", "outlook.office365.com"),
    "yahoo.com": ("smtp.mail.yahoo.com", "imap.mail.yahoo.com"),
    "icloud.com": ("smtp.mail.me.com", "imap.mail.me.com"),
    "me.com": ("smtp.mail.me.com", "imap.mail.me.com"),
    "zoho.com": ("smtp.zoho.com", "imap.zoho.com"),
    "fastmail.com": ("smtp.fastmail.com", "imap.fastmail.com"),
}


def default_hosts(domain: str) -> tuple[str, str]:
    """(SMTP host, IMAP host) for a domain: a known provider's, else ``smtp.``/``imap.``."""
    return _WELL_KNOWN.get(domain.lower(), (f"smtp.{domain}", f"imap.{domain}"))


# A host name (letters, digits, hyphens; labels of up to 63), an IPv4 address, or an IPv6
# address in brackets: exactly what the settings accept, also given to the API description.
HOST_PATTERN = (
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"\.?|\[[0-9A-Fa-f:.]{2,45}\])$"
)
HOST = re.compile(HOST_PATTERN)
_HOST_SCHEMA: dict[str, Any] = {"pattern": HOST_PATTERN, "maxLength": 253}


class SmtpImapSettings(BaseModel):
    """Connection settings of an SMTP/IMAP account; every field has a default.

    Hosts default to the address's provider (:func:`default_hosts`), ports to the standard
    port of the chosen security, the username to the address.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    smtp_host: str | None = Field(default=None, json_schema_extra=_HOST_SCHEMA)
    smtp_port: Port | None = None
    smtp_security: Security = Security.STARTTLS
    imap_host: str | None = Field(default=None, json_schema_extra=_HOST_SCHEMA)
    imap_port: Port | None = None
    imap_security: Security = Security.TLS
    username: str | None = None
    ca_file: str | None = None
    verify_tls: JsonBool = True
    allow_plaintext: JsonBool = False
    append_sent: JsonBool | None = None
    spam_folder: str | None = None
    sent_folder: str | None = None
    max_connections: JsonInt = Field(default=2, ge=1, le=20)
    timeout: JsonFloat = Field(default=30.0, gt=0, le=600)

    @field_validator("smtp_host", "imap_host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > 253 or not HOST.match(value):
            raise ValueError(
                f"{value!r} is not a host name: give only the name, like mail.example.com "
                "(put the port in smtp_port / imap_port; write an international name in its "
                "xn-- form, an IPv6 address in brackets)"
            )
        return value.rstrip(".").strip("[]")


def _ssl_context(settings: SmtpImapSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file)
    if not settings.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SmtpImapProvider(BaseProvider):
    """One mailbox over SMTP and IMAP.

    ``token_provider``: for ``oauth2`` credentials, an async callable returning a fresh
    access token (XOAUTH2); by default the credentials' ``access_token`` is used as is.
    """

    name = "smtp"
    settings_model: ClassVar[type[BaseModel]] = SmtpImapSettings
    supported = frozenset(
        {Capability.MARK_IMPORTANT, Capability.FLAG, Capability.MOVE_TO_INBOX, Capability.THREADING}
    )

    def __init__(
        self,
        account: EmailAccount,
        *,
        credentials: Credentials | None,
        settings: SmtpImapSettings | None = None,
        context: ProviderContext | None = None,
        retry: RetryPolicy | None = None,
        token_provider: TokenProvider | None = None,
    ) -> None:
        super().__init__(account)
        require("aiosmtplib", extra="smtp")
        require("aioimaplib", extra="smtp")
        from mailwarm.providers._imap_mailbox import ImapMailbox
        from mailwarm.providers._smtp import SmtpSession

        self.settings = settings or SmtpImapSettings()
        self.context = context or ProviderContext()
        self.retry = retry or RetryPolicy()
        if credentials is None:
            raise ConfigurationError(
                f"account {account.address}: SMTP/IMAP needs credentials "
                "(a password, or an OAuth access token)"
            )
        self._credentials = credentials
        if credentials.kind == "oauth2" and token_provider is None:
            token_provider = self._static_token
        self._token = token_provider if credentials.kind == "oauth2" else None
        smtp_default, imap_default = default_hosts(account.domain)
        s = self.settings
        self.smtp_host = s.smtp_host or smtp_default
        self.imap_host = s.imap_host or imap_default
        self.smtp_port = s.smtp_port or DEFAULT_PORTS["smtp"][s.smtp_security]
        self.imap_port = s.imap_port or DEFAULT_PORTS["imap"][s.imap_security]
        self.username = s.username or credentials.username or account.address
        self._tls = _ssl_context(s)
        password = credentials.password.get_secret_value() if credentials.password else None
        self._smtp: SmtpSession = SmtpSession(
            host=self.smtp_host,
            port=self.smtp_port,
            security=s.smtp_security.value,
            context=self._tls,
            username=self.username,
            password=password if self._token is None else None,
            token=self._token,
            local_hostname=account.domain,
            timeout=s.timeout,
            resolve=lambda: self._resolve("SMTP", self.smtp_host, self.smtp_port, s.smtp_security),
        )
        self._imap: ImapMailbox = ImapMailbox(
            self._open_imap,
            address=account.address,
            max_connections=s.max_connections,
            spam_folder=s.spam_folder,
            sent_folder=s.sent_folder,
        )
        self._important_keyword: bool | None = None

    async def _static_token(self) -> str:
        if self._credentials.access_token is None:
            raise AuthExpired(
                f"account {self.account.address} has no OAuth access token: reconnect it",
                provider=self.name,
                account_id=self.account.id,
            )
        return self._credentials.access_token.get_secret_value()

    # -- connecting --------------------------------------------------------------------------

    async def _resolve(self, what: str, host: str, port: int, security: Security) -> list[str]:
        addresses = await check_host(
            host, port, allow_private=self.context.allow_private_hosts, what=what
        )
        if security is Security.NONE and not self.settings.allow_plaintext:
            exposed = [a for a in addresses if is_public_address(a)]
            if exposed:
                raise ConfigurationError(
                    f"{what} host {host} would get the password without encryption: set "
                    f"{what.lower()}_security to tls or starttls (or allow_plaintext = true "
                    "if the network between you and the server is trusted)"
                )
        return addresses

    async def _open_imap(self) -> ImapConnection:
        from mailwarm.providers._imap import ImapConnection

        s = self.settings
        addresses = await self._resolve("IMAP", self.imap_host, self.imap_port, s.imap_security)
        last: Exception | None = None
        for address in addresses:
            try:
                conn = await ImapConnection.open(
                    address,
                    self.imap_port,
                    security=s.imap_security.value,
                    context=self._tls,
                    server_hostname=self.imap_host,
                    timeout=s.timeout,
                )
                break
            except (OSError, TimeoutError) as exc:
                last = exc
        else:
            raise last or OSError("no address")
        try:
            if self._token is not None:
                await conn.xoauth2(self.username, await self._token())
            else:
                password = self._credentials.password
                await conn.login(self.username, password.get_secret_value() if password else "")
        except BaseException:
            await conn.logout()
            raise
        return conn

    # -- error mapping -----------------------------------------------------------------------

    def _error(self, exc: BaseException, action: str) -> ProviderError:
        """One mailwarm error for any SMTP/IMAP failure; messages carry codes, never secrets."""
        from mailwarm.providers._imap import ImapError
        from mailwarm.providers._imap_mailbox import MessageGone
        from mailwarm.providers._smtp import SmtpFailure

        where: dict[str, Any] = {"provider": self.name, "account_id": self.account.id}
        who = f"{self.account.address}: {action}"
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, MessageGone):
            return PermanentProviderError(
                f"{who}: message {exc} is in neither the inbox nor the spam folder", **where
            )
        if isinstance(exc, SmtpFailure):
            text = f"{who}: SMTP {self.smtp_host}: {exc.message}"
            if exc.kind == "auth":
                return AuthExpired(
                    f"{text}; check the username and password (or app password)", **where
                )
            if exc.kind == "tls":
                return PermanentProviderError(
                    f"{text}; check smtp_security and the server's certificate (ca_file)",
                    **where,
                )
            if exc.kind == "connect":
                return TransientProviderError(text, **where)
            if exc.kind == "unknown_outcome":
                return DeliveryUnknown(text, **where)
            lowered = exc.message.lower()
            if "5.4.5" in lowered or "quota" in lowered or "limit exceeded" in lowered:
                return QuotaExhausted(text, **where)  # e.g. Gmail 550 5.4.5 daily limit
            code = exc.code or 0
            if 400 <= code < 500:
                if "4.7." in lowered and ("rate" in lowered or "too many" in lowered):
                    return RateLimited(text, **where)
                return TransientProviderError(text, **where)
            return PermanentProviderError(text, **where)
        if isinstance(exc, ImapError):
            text = f"{who}: IMAP {self.imap_host}: {exc}"
            if exc.code == "PRIVACYREQUIRED" or "LOGINDISABLED" in exc.text:
                return PermanentProviderError(
                    f"{text}; the server only accepts logins over TLS: set imap_security to "
                    "tls or starttls",
                    **where,
                )
            if exc.command in ("LOGIN", "AUTHENTICATE") or exc.code == "AUTHENTICATIONFAILED":
                return AuthExpired(
                    f"{text}; check the username and password (or app password)", **where
                )
            if exc.result in ("LOST", "BYE", "ABORT") or exc.code in (
                "UNAVAILABLE",
                "INUSE",
                "LIMIT",
                "SERVERBUG",
            ):
                return TransientProviderError(text, **where)
            return PermanentProviderError(text, **where)
        if isinstance(exc, ssl.SSLError):
            return PermanentProviderError(
                f"{who}: TLS to IMAP {self.imap_host} failed ({exc.reason or exc}); check "
                "imap_security and the server's certificate (ca_file)",
                **where,
            )
        if isinstance(exc, ConnectionError | OSError | TimeoutError):
            return TransientProviderError(f"{who}: {type(exc).__name__}: {exc}", **where)
        aioimaplib = require("aioimaplib", extra="smtp")
        if isinstance(exc, aioimaplib.AioImapException):
            return TransientProviderError(f"{who}: IMAP: {exc}", **where)
        raise exc

    async def _run(
        self,
        action: str,
        call: Callable[[], Awaitable[T]],
        *,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> T:
        async def mapped() -> T:
            try:
                return await call()
            except (ConfigurationError, UnsupportedAction):
                raise
            except Exception as exc:
                raise self._error(exc, action) from exc

        return await with_retries(
            mapped,
            clock=self.context.clock,
            rng=self.context.rng,
            policy=self.retry,
            retry_if=retry_if,
        )

    # -- sending -----------------------------------------------------------------------------

    def _ref(self, message: OutgoingMessage, folder: str | None) -> MessageRef:
        from mailwarm.providers._imap_mailbox import thread_root

        root = thread_root(message.message_id, message.in_reply_to, message.references)
        return MessageRef(message.message_id, folder=folder, thread_id=root)

    async def _submit(self, message: OutgoingMessage, action: str) -> MessageRef:
        data = message.to_bytes()

        async def submit() -> None:
            await self._smtp.send(self.account.address, [message.recipient], data)

        try:
            await self._run(action, submit)
        except DeliveryUnknown:
            # Gmail and Outlook file SMTP submissions in Sent themselves: a copy there means
            # it went out. Elsewhere nothing can confirm it, so never resend blindly.
            if await self._autosaves_sent() and await self._run(
                "confirm", lambda: self._imap.in_sent(message.message_id)
            ):
                return self._ref(message, None)
            raise
        folder = None
        if await self._append_sent():
            folder = await self._run(
                "append to Sent", lambda: self._imap.append("sent", data, "(\\Seen)")
            )
        return self._ref(message, folder)

    async def _autosaves_sent(self) -> bool:
        if not self._imap.capabilities:
            await self._run("connect", self._imap.probe)
        return self._imap.is_gmail or self.imap_host.endswith(
            ("outlook.office365.com", "office365.com")
        )

    async def _append_sent(self) -> bool:
        if self.settings.append_sent is not None:
            return self.settings.append_sent
        return not await self._autosaves_sent()

    async def send(self, message: OutgoingMessage) -> MessageRef:
        """Submit over SMTP, then file a copy in Sent (unless the server does that itself)."""
        return await self._submit(message, "send")

    async def reply(self, original: MessageRef, message: OutgoingMessage) -> MessageRef:
        """Send the reply (its In-Reply-To/References come with ``message``) and mark the
        original answered."""
        ref = await self._submit(message, "reply")
        from mailwarm.providers._imap_mailbox import MessageGone

        try:
            await self._run("mark answered", lambda: self._imap.store(original, "(\\Answered)"))
        except PermanentProviderError as exc:
            if not isinstance(exc.__cause__, MessageGone):
                raise
        return ref

    # -- receiving side ----------------------------------------------------------------------

    async def locate(self, message_ids: Sequence[str]) -> dict[str, Located]:
        """Find received messages in the inbox and spam folders, in batched searches."""
        if not message_ids:
            return {}
        return await self._run("locate", lambda: self._imap.locate(message_ids))

    async def list_recent(self, since: datetime) -> list[Located]:
        """Received messages since ``since`` (arrival time), in the inbox and spam folders."""
        return await self._run("list recent", lambda: self._imap.list_recent(since))

    async def _store(self, ref: MessageRef, flags: str, action: str, labels: bool = False) -> None:
        await self._run(action, lambda: self._imap.store(ref, flags, labels=labels))

    async def mark_read(self, ref: MessageRef) -> None:
        """Set ``\\Seen``."""
        await self._store(ref, "(\\Seen)", "mark read")

    async def flag(self, ref: MessageRef) -> None:
        """Set ``\\Flagged`` (a star in most clients)."""
        await self._store(ref, "(\\Flagged)", "flag")

    async def mark_important(self, ref: MessageRef) -> None:
        """Gmail's ``\\Important`` label, else the ``$Important`` keyword (RFC 8457)."""
        if not self._imap.capabilities:
            await self._run("connect", self._imap.probe)
        if self._imap.is_gmail:
            await self._store(ref, "(\\Important)", "mark important", labels=True)
            return
        if self._important_keyword is None:
            self._important_keyword = await self._run(
                "mark important", lambda: self._imap.keyword_allowed("$Important")
            )
        if not self._important_keyword:
            raise self._unsupported("mark_important (the server keeps no custom keywords)")
        await self._store(ref, "($Important)", "mark important")

    async def move_to_inbox(self, ref: MessageRef) -> MessageRef:
        """Rescue from the real spam folder (never from anywhere else)."""
        from mailwarm.providers._imap_mailbox import NotInSpam

        async def move() -> MessageRef:
            try:
                return await self._imap.move_to_inbox(ref)
            except NotInSpam as exc:
                raise UnsupportedAction(
                    f"{self.account.address}: message {ref.message_id} is in {exc}, not in the "
                    "spam folder: nothing to rescue",
                    provider=self.name,
                    account_id=self.account.id,
                ) from None

        return await self._run("move to inbox", move)

    # -- connection check --------------------------------------------------------------------

    async def check(self) -> CheckReport:
        """Log in over SMTP and IMAP, find the spam and sent folders; say what to fix."""
        checks: dict[str, bool] = {}
        problems: list[str] = []

        async def attempt(name: str, call: Callable[[], Awaitable[Any]]) -> Any:
            try:
                result = await call()
            except ConfigurationError as exc:
                checks[name] = False
                problems.append(str(exc))
                return None
            except Exception as exc:
                checks[name] = False
                problems.append(str(self._error(exc, f"{name} check")))
                return None
            checks[name] = True
            return result

        await attempt("smtp", self._smtp.check)
        folders = await attempt("imap", self._imap.probe)
        if folders is not None:
            checks["spam_folder"] = folders.spam is not None
            if folders.spam is None:
                problems.append(
                    f"{self.account.address}: no spam folder found over IMAP (no \\Junk "
                    "folder and none named Junk or Spam): set spam_folder, or rescue stays off"
                )
            checks["sent_folder"] = folders.sent is not None
            if folders.sent is None and await self._append_sent():
                problems.append(
                    f"{self.account.address}: no Sent folder found over IMAP: set sent_folder"
                )
        return CheckReport(ok=not problems, checks=checks, problems=problems)

    async def aclose(self) -> None:
        """Close the SMTP session and every IMAP connection."""
        await self._smtp.aclose()
        await self._imap.aclose()
