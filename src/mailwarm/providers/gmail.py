"""Gmail and Google Workspace mailboxes through the Gmail REST API: ``provider = "gmail"``.

Our own async httpx client (``_gmail_api.py``), not google-api-python-client (synchronous,
httplib2, in maintenance mode). Warmup verbs are label changes on one message id, which Gmail
keeps across label changes (https://developers.google.com/gmail/api/guides/labels):

- rescue from spam: add ``INBOX``, remove ``SPAM`` (only when the message has ``SPAM``);
- read: remove ``UNREAD``; star: add ``STARRED``; important: add ``IMPORTANT``;
- placement: ``SPAM`` is spam, ``INBOX`` with ``CATEGORY_PROMOTIONS`` promotions, ``INBOX``
  the inbox.

Needs an OAuth refresh token with the ``gmail.modify`` scope and the operator's OAuth client
as ``ProviderContext(oauth={"google": OAuthApp(...)})``. The core install is enough (the
``gmail`` extra adds nothing).
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from email.utils import parseaddr
from typing import Annotated, Any, ClassVar, Literal

import httpx
from annotated_types import Interval
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from mailwarm._errors import (
    ConfigurationError,
    DeliveryUnknown,
    PermanentProviderError,
    ProviderError,
    QuotaExhausted,
    UnsupportedAction,
)
from mailwarm._json import JsonFloat, json_number
from mailwarm._models import Credentials, EmailAccount, Placement
from mailwarm.engine import (
    BaseProvider,
    Capability,
    CheckReport,
    Located,
    MessageRef,
    OutgoingMessage,
)
from mailwarm.providers._context import ProviderContext
from mailwarm.providers._gmail_api import GmailApi, bare_message_id, header
from mailwarm.providers._gmail_errors import HistoryExpired, MessageNotFound
from mailwarm.providers._google_oauth import GMAIL_SCOPES, GoogleTokens
from mailwarm.providers._pacing import RollingCounter
from mailwarm.providers._retry import RetryPolicy

__all__ = ["DAILY_SEND_LIMITS", "GmailChanges", "GmailProvider", "GmailSettings"]

log = logging.getLogger("mailwarm.providers.gmail")

AccountType = Literal["workspace", "consumer", "trial"]

# Per-user sending limits, rolling 24 hours, shared with the web UI and SMTP
# (https://support.google.com/a/answer/166852; consumer accounts: 500 a day).
DAILY_SEND_LIMITS: dict[str, int] = {"workspace": 2_000, "consumer": 500, "trial": 500}
CONSUMER_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

# Message-IDs per search: Gmail has no documented query length limit, and a few dozen
# rfc822msgid: terms keep the URL far from the usual 8 KB request-line limits.
LOCATE_CHUNK = 20
# Characters Gmail's search syntax gives a meaning ({ } ( ) quotes, spaces); a Message-ID
# containing one cannot be searched for reliably, so such ids are reported as not found.
_SEARCH_UNSAFE = frozenset('{}()" \t\r\n')
SendLimit = Annotated[int, Interval(ge=1, le=2_000), BeforeValidator(json_number)]


class GmailSettings(BaseModel):
    """Connection settings of a Gmail account.

    ``account_type`` sets the daily sending limit: ``workspace`` 2,000, ``consumer`` and
    ``trial`` (a Workspace trial) 500; by default gmail.com and googlemail.com addresses are
    ``consumer``, any other domain ``workspace``. ``daily_send_limit`` lowers that limit.
    ``timeout`` is the per-request timeout in seconds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_type: AccountType | None = None
    daily_send_limit: SendLimit | None = None
    timeout: JsonFloat = Field(default=30.0, gt=0, le=300)

    def resolved_account_type(self, address: str) -> AccountType:
        """``account_type``, or the default for ``address``'s domain."""
        if self.account_type is not None:
            return self.account_type
        domain = address.rsplit("@", 1)[-1].lower()
        return "consumer" if domain in CONSUMER_DOMAINS else "workspace"


@dataclass(frozen=True, slots=True)
class GmailChanges:
    """What :meth:`GmailProvider.changes` found: messages received since the last call, the
    history id to pass next time, and whether it had to list the mailbox in full."""

    received: list[Located]
    history_id: str
    full_sync: bool


def _labels(message: dict[str, Any]) -> frozenset[str]:
    return frozenset(message.get("labelIds", []))


def _folder(labels: frozenset[str]) -> str | None:
    for label in ("SPAM", "INBOX", "TRASH", "SENT"):
        if label in labels:
            return label
    return None  # archived: no folder-like label


def _placement(labels: frozenset[str]) -> Placement:
    if "SPAM" in labels:
        return Placement.SPAM
    if "INBOX" in labels:
        return Placement.PROMOTIONS if "CATEGORY_PROMOTIONS" in labels else Placement.INBOX
    return Placement.UNKNOWN


def _received(labels: frozenset[str]) -> bool:
    # The sender's own copy carries SENT (a message to oneself also has INBOX, and is not
    # "received" from a peer either).
    return "SENT" not in labels


def _decoded(value: str | None) -> str | None:
    if value is None or "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError):
        return value


def _ref(message_id: str, message: dict[str, Any]) -> MessageRef:
    return MessageRef(
        message_id,
        provider_id=str(message["id"]),
        folder=_folder(_labels(message)),
        thread_id=message.get("threadId"),
    )


def _located(message_id: str, message: dict[str, Any]) -> Located:
    labels = _labels(message)
    sender = parseaddr(header(message, "From") or "")[1]
    return Located(
        _ref(message_id, message),
        _placement(labels),
        sender=sender.lower() or None,
        subject=_decoded(header(message, "Subject")),
        seen="UNREAD" not in labels,
        flagged="STARRED" in labels,
        important="IMPORTANT" in labels,
    )


class GmailProvider(BaseProvider):
    """One Gmail or Google Workspace mailbox over the Gmail API.

    ``retry`` overrides the retry policy (tests pass ``NO_RETRY``). The constructor does no
    network I/O; ``check()`` tests the connection.
    """

    name = "gmail"
    supported = frozenset(
        {Capability.MARK_IMPORTANT, Capability.FLAG, Capability.MOVE_TO_INBOX, Capability.THREADING}
    )
    settings_model: ClassVar[type[BaseModel]] = GmailSettings

    def __init__(
        self,
        account: EmailAccount,
        *,
        credentials: Credentials | None,
        settings: GmailSettings | None = None,
        context: ProviderContext | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(account)
        self.settings = settings or GmailSettings()
        self.context = context or ProviderContext()
        if credentials is None or credentials.kind != "oauth2":
            raise ConfigurationError(
                f"account {account.address}: the gmail provider needs OAuth credentials "
                '(kind "oauth2" with a refresh token); connect the account with Google first'
            )
        app = self.context.oauth.get("google")
        if credentials.refresh_token is not None and app is None:
            raise ConfigurationError(
                f"account {account.address}: refreshing its Google token needs the operator's "
                'OAuth client: pass ProviderContext(oauth={"google": OAuthApp(client_id=..., '
                "client_secret=...)})"
            )
        self.account_type = self.settings.resolved_account_type(account.address)
        limit = DAILY_SEND_LIMITS[self.account_type]
        if self.settings.daily_send_limit is not None:
            limit = min(limit, self.settings.daily_send_limit)
        self.sends = RollingCounter(limit, timedelta(hours=24), self.context.clock)
        self._client: httpx.AsyncClient | None = None
        self.tokens = GoogleTokens(
            credentials, app=app, context=self.context, http=self._http, provider=self.name
        )
        self.api = GmailApi(
            tokens=self.tokens,
            http=self._http,
            context=self.context,
            policy=retry or RetryPolicy(),
            provider=self.name,
            account_id=account.id,
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self.settings.timeout)
        return self._client

    @property
    def daily_send_limit(self) -> int:
        """Messages this account may send in a rolling 24 hours."""
        return self.sends.limit

    def _error(self, kind: type[ProviderError], message: str) -> ProviderError:
        return kind(message, provider=self.name, account_id=self.account.id)

    # -- sending -----------------------------------------------------------------------------

    async def send(self, message: OutgoingMessage) -> MessageRef:
        """Send with ``messages.send``; the ref is the sender's Sent copy.

        Raises :class:`~mailwarm.QuotaExhausted` at the daily limit (no request is made) and
        :class:`~mailwarm.DeliveryUnknown` when the outcome cannot be confirmed.
        """
        return await self._send(message, thread_id=None)

    async def reply(self, original: MessageRef, message: OutgoingMessage) -> MessageRef:
        """Send ``message`` in the Gmail thread of the received ``original``.

        Gmail threads a sent message only with ``threadId``, matching In-Reply-To/References
        and the same subject (https://developers.google.com/gmail/api/guides/threads).
        """
        if message.in_reply_to != original.message_id:
            raise self._error(
                PermanentProviderError, "a reply must carry In-Reply-To of the original"
            )
        thread_id = original.thread_id
        if thread_id is None:
            thread_id = (await self._resolve(original)).get("threadId")
        return await self._send(message, thread_id=thread_id)

    async def _send(self, message: OutgoingMessage, *, thread_id: str | None) -> MessageRef:
        try:
            self.sends.check(f"Gmail daily sending limit of {self.account.address}")
        except QuotaExhausted as exc:
            raise self._error(QuotaExhausted, str(exc)) from None
        # RFC 5322 with CRLF line ends; base64url as messages.send's "raw" field requires.
        mime = message.to_bytes()
        raw = base64.urlsafe_b64encode(mime).decode("ascii")
        try:
            sent = await self.api.send(raw, message_id=message.message_id, thread_id=thread_id)
        except DeliveryUnknown:
            self.sends.add()  # it may have gone out: count it against the limit
            raise
        self.sends.add()
        return _ref(message.message_id, sent)

    # -- finding messages ------------------------------------------------------------------------

    async def locate(self, message_ids: Sequence[str]) -> dict[str, Located]:
        """Find received copies with one ``rfc822msgid:`` search per 20 ids, spam included;
        the sender's own Sent copy never counts."""
        wanted: dict[str, str] = {}
        for message_id in message_ids:
            bare = bare_message_id(message_id)
            if bare and not (_SEARCH_UNSAFE & set(bare)):
                wanted.setdefault(bare, message_id)
        found: dict[str, Located] = {}
        bares = list(wanted)
        for start in range(0, len(bares), LOCATE_CHUNK):
            terms = " ".join(f"rfc822msgid:{b}" for b in bares[start : start + LOCATE_CHUNK])
            # { } is Gmail's OR; -in:sent drops the Sent copies before they cost a get.
            for hit in await self.api.list_messages(q=f"{{{terms}}} -in:sent"):
                meta = await self.api.get_metadata(hit["id"])
                bare = bare_message_id(header(meta, "Message-ID") or "")
                if bare in wanted and wanted[bare] not in found and _received(_labels(meta)):
                    found[wanted[bare]] = _located(wanted[bare], meta)
        return found

    async def _find(self, message_id: str) -> dict[str, Any]:
        """The metadata of the received copy of ``message_id``, found by search."""
        bare = bare_message_id(message_id)
        if bare and not (_SEARCH_UNSAFE & set(bare)):
            for hit in await self.api.list_messages(q=f"rfc822msgid:{bare} -in:sent", limit=10):
                meta = await self.api.get_metadata(hit["id"])
                if bare_message_id(header(meta, "Message-ID") or "") == bare and _received(
                    _labels(meta)
                ):
                    return meta
        raise self._error(PermanentProviderError, f"message {message_id} is not in this mailbox")

    async def _resolve(self, ref: MessageRef) -> dict[str, Any]:
        """The metadata of the received message ``ref`` points at (by Gmail id, else search)."""
        if ref.provider_id and ref.folder != "SENT":
            try:
                meta = await self.api.get_metadata(ref.provider_id)
            except MessageNotFound:
                pass
            else:
                same = bare_message_id(header(meta, "Message-ID") or "")
                if same == bare_message_id(ref.message_id) and _received(_labels(meta)):
                    return meta
        return await self._find(ref.message_id)

    async def list_recent(self, since: datetime) -> list[Located]:
        """Received messages in the inbox and spam whose Gmail internal date is at or after
        ``since`` (never the Sent copies)."""
        # after: takes epoch seconds and is coarse: ask from a second earlier, filter exactly.
        after = math.floor(since.timestamp()) - 1
        hits = await self.api.list_messages(q=f"{{in:inbox in:spam}} -in:sent after:{after}")
        return await self._located_many([hit["id"] for hit in hits], since=since)

    async def _located_many(
        self, gmail_ids: Sequence[str], *, since: datetime | None = None
    ) -> list[Located]:
        since_ms = None if since is None else since.timestamp() * 1000
        result: list[Located] = []
        for gmail_id in dict.fromkeys(gmail_ids):
            try:
                meta = await self.api.get_metadata(gmail_id)
            except MessageNotFound:
                continue  # deleted between the listing and now
            labels = _labels(meta)
            message_id = header(meta, "Message-ID")
            if not message_id or not _received(labels) or not ({"INBOX", "SPAM"} & labels):
                continue
            if since_ms is not None and float(meta.get("internalDate", 0)) < since_ms:
                continue
            result.append(_located(message_id.strip(), meta))
        return result

    async def changes(self, history_id: str | None, *, since: datetime) -> GmailChanges:
        """Messages received since ``history_id`` (from ``history.list``, 2 quota units a
        page), and the id to pass next time. Without an id, or when Gmail no longer has that
        history (404, https://developers.google.com/gmail/api/guides/sync), it lists the
        inbox and spam since ``since`` in full."""
        if history_id is not None:
            try:
                records, latest = await self.api.history(history_id)
            except HistoryExpired:
                log.info("history of account %s expired: full sync", self.account.id)
            else:
                added = [
                    item["message"]["id"]
                    for record in records
                    for item in record.get("messagesAdded", [])
                ]
                return GmailChanges(await self._located_many(added), latest, full_sync=False)
        # The history id is read first, so anything arriving during the listing is seen next time.
        latest = str((await self.api.profile())["historyId"])
        return GmailChanges(await self.list_recent(since), latest, full_sync=True)

    # -- label changes -----------------------------------------------------------------------------

    async def _modify(
        self, ref: MessageRef, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> dict[str, Any]:
        # Gmail ids survive label changes, so a ref's id is used as is; only an id Gmail
        # does not know (or a Sent-copy ref) is re-resolved by Message-ID.
        if ref.provider_id and ref.folder != "SENT":
            try:
                return await self.api.modify(ref.provider_id, add=add, remove=remove)
            except MessageNotFound:
                pass
        meta = await self._find(ref.message_id)
        return await self.api.modify(str(meta["id"]), add=add, remove=remove)

    async def mark_read(self, ref: MessageRef) -> None:
        """Remove ``UNREAD``. Idempotent."""
        await self._modify(ref, remove=["UNREAD"])

    async def mark_important(self, ref: MessageRef) -> None:
        """Add ``IMPORTANT``. Idempotent."""
        await self._modify(ref, add=["IMPORTANT"])

    async def flag(self, ref: MessageRef) -> None:
        """Add ``STARRED``. Idempotent."""
        await self._modify(ref, add=["STARRED"])

    async def mark_read_many(self, refs: Sequence[MessageRef]) -> None:
        """Mark many received messages read with ``messages.batchModify`` (50 units per
        1,000 messages instead of 5 per message)."""
        ids = [r.provider_id for r in refs if r.provider_id and r.folder != "SENT"]
        missing = [r.message_id for r in refs if not r.provider_id or r.folder == "SENT"]
        if missing:
            ids.extend(str(loc.ref.provider_id) for loc in (await self.locate(missing)).values())
        if ids:
            await self.api.batch_modify(list(dict.fromkeys(ids)), remove=["UNREAD"])

    async def move_to_inbox(self, ref: MessageRef) -> MessageRef:
        """Rescue ("not spam"): add ``INBOX`` and remove ``SPAM``; the Gmail id stays the same.
        Raises :class:`~mailwarm.UnsupportedAction` unless the message has ``SPAM``."""
        meta = await self._resolve(ref)
        if "SPAM" not in _labels(meta):
            raise self._error(
                UnsupportedAction,
                f"message {ref.message_id} is not in spam (labels "
                f"{', '.join(sorted(_labels(meta))) or 'none'}): nothing to rescue",
            )
        answer = await self.api.modify(str(meta["id"]), add=["INBOX"], remove=["SPAM"])
        return _ref(ref.message_id, answer)

    # -- connection ------------------------------------------------------------------------------

    async def check(self) -> CheckReport:
        """Token, profile (the token's mailbox is this account), labels and granted scopes."""
        checks: dict[str, bool] = {}
        problems: list[str] = []
        try:
            await self.tokens.token()
            if not self.tokens.granted_scopes and self.tokens.credentials.refresh_token:
                await self.tokens.force_refresh()  # the token answer says what was granted
            checks["token"] = True
        except ProviderError as exc:
            checks["token"] = False
            problems.append(f"could not get a Google access token: {exc}")
            return CheckReport(ok=False, checks=checks, problems=problems)

        granted = self.tokens.granted_scopes
        if granted:
            checks["scopes"] = bool(granted & GMAIL_SCOPES)
            if not checks["scopes"]:
                problems.append(
                    "the account was connected without the "
                    "https://www.googleapis.com/auth/gmail.modify scope (granted: "
                    f"{', '.join(sorted(granted))}): reconnect it and allow reading, sending "
                    "and organising mail"
                )
        try:
            address = str((await self.api.profile()).get("emailAddress", ""))
            checks["profile"] = address.lower() == self.account.address.lower()
            if not checks["profile"]:
                problems.append(
                    f"the Google token belongs to {address or 'an unknown mailbox'}, not "
                    f"{self.account.address}: reconnect with the right Google account"
                )
        except ProviderError as exc:
            checks["profile"] = False
            problems.append(f"could not read the Gmail profile: {exc}")
        try:
            ids = {str(label.get("id")) for label in await self.api.labels()}
            missing = sorted({"INBOX", "SPAM"} - ids)
            checks["labels"] = not missing
            if missing:
                problems.append(
                    f"the mailbox has no {' and no '.join(missing)} label: it does not look "
                    "like a Gmail mailbox"
                )
        except ProviderError as exc:
            checks["labels"] = False
            problems.append(f"could not list the Gmail labels: {exc}")
        return CheckReport(ok=not problems, checks=checks, problems=problems)

    async def aclose(self) -> None:
        """Close the HTTP connections (idempotent; a later call opens new ones)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
