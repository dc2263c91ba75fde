"""Microsoft 365 and Outlook.com mailboxes through Microsoft Graph v1.0.

:class:`GraphProvider` speaks Graph's REST API with its own async httpx client
(:mod:`._graph_http`) and gets tokens from msal (:mod:`._graph_auth`, imported when the first
token is needed; ``pip install "mailwarm[graph]"``). Message ids are immutable ids, so a
reference survives the move out of Junk Email.

Sending is draft-then-send: ``POST /messages`` with our Message-ID, ``POST /messages/{id}/send``,
then a read-back of the Sent Items copy, which keeps the draft's immutable id. ``sendMail``
is not used: it answers 202 without any id. Replies go through ``createReply``, which is how
Graph sets In-Reply-To and References (JSON cannot carry them); the draft is patched with our
subject, body and Message-ID before it is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mailwarm._errors import (
    ConfigurationError,
    DeliveryUnknown,
    MissingExtra,
    PermanentProviderError,
    ProviderError,
    UnsupportedAction,
)
from mailwarm._json import JsonFloat, JsonInt
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
from mailwarm.providers._graph_auth import GraphTokens
from mailwarm.providers._graph_http import GraphChannel, OutcomeUnknown
from mailwarm.providers._graph_mail import GraphMail
from mailwarm.providers._pacing import RollingCounter, TokenBucket
from mailwarm.providers._retry import RetryPolicy

__all__ = ["GraphProvider", "GraphSettings"]


class GraphSettings(BaseModel):
    """Connection settings of a Graph mailbox (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field(
        default="me",
        pattern=r"^[^/?#\s]+$",
        max_length=320,
        description='"me" (the signed-in account) or a user id / userPrincipalName whose '
        "mailbox the account was delegated",
    )
    timeout_seconds: JsonFloat = Field(default=30.0, gt=0, le=300)
    page_size: JsonInt = Field(default=100, ge=1, le=1000, description="$top of list requests")
    sends_per_minute: JsonInt = Field(
        default=30, ge=1, le=30, description="Exchange Online allows 30 messages a minute"
    )
    recipients_per_day: JsonInt = Field(
        default=10_000, ge=1, le=10_000, description="Exchange Online: 10,000 a rolling day"
    )
    sent_copy_wait_seconds: JsonFloat = Field(
        default=30.0,
        ge=0,
        le=600,
        description="how long to look for the Sent Items copy after a send",
    )


class GraphProvider(BaseProvider):
    """One Microsoft mailbox over Graph: all four capabilities; the conversation is the thread.

    ``credentials`` (``kind="oauth2"``) need an msal ``token_cache`` or a ``refresh_token``;
    ``context.oauth["microsoft"]`` is the Entra ID app (client id, secret, tenant). ``retry``
    overrides the retry policy; ``msal_http_client`` is passed to msal as its ``http_client``
    (tests use a fake Entra ID). The constructor does no I/O.
    """

    name = "graph"
    supported = frozenset(
        {Capability.MARK_IMPORTANT, Capability.FLAG, Capability.MOVE_TO_INBOX, Capability.THREADING}
    )
    settings_model: ClassVar[type[BaseModel]] = GraphSettings

    def __init__(
        self,
        account: EmailAccount,
        *,
        credentials: Credentials | None,
        settings: GraphSettings | dict[str, Any] | None = None,
        context: ProviderContext,
        retry: RetryPolicy | None = None,
        msal_http_client: Any | None = None,
    ) -> None:
        super().__init__(account)
        self.settings = _settings(account, settings)
        self.context = context
        app = context.oauth.get("microsoft")
        if app is None or app.client_secret is None:
            raise ConfigurationError(
                f"account {account.address}: the graph provider needs the operator's Entra ID "
                'app as ProviderContext.oauth["microsoft"], with its client secret'
            )
        if credentials is None or credentials.kind != "oauth2":
            raise ConfigurationError(
                f"account {account.address}: the graph provider needs OAuth credentials "
                '(kind="oauth2"): connect the Microsoft account first'
            )
        if credentials.token_cache is None and credentials.refresh_token is None:
            raise ConfigurationError(
                f"account {account.address}: the Microsoft credentials have neither a token "
                "cache nor a refresh token: connect the Microsoft account again"
            )
        self.policy = retry or RetryPolicy()
        self._tokens = GraphTokens(
            account,
            credentials,
            app,
            context,
            provider=self.name,
            timeout=self.settings.timeout_seconds,
            msal_http_client=msal_http_client,
        )
        self._channel = GraphChannel(
            tokens=self._tokens,
            user=self.settings.user,
            clock=context.clock,
            rng=context.rng,
            policy=self.policy,
            timeout=self.settings.timeout_seconds,
            provider=self.name,
            account_id=account.id,
        )
        self._mail = GraphMail(self._channel, account.address, self.settings.page_size)
        # Exchange Online's own sending limits, kept on our side so a burst waits here instead
        # of piling up in the Outbox or blocking the mailbox.
        self._send_pace = TokenBucket(
            self.settings.sends_per_minute, timedelta(minutes=1), context.clock
        )
        self._recipients = RollingCounter(
            self.settings.recipients_per_day, timedelta(days=1), context.clock
        )

    @property
    def credentials(self) -> Credentials:
        """The current credentials, with msal's latest token cache."""
        return self._tokens.credentials

    # -- sending ---------------------------------------------------------------------------

    async def send(self, message: OutgoingMessage) -> MessageRef:
        """Create a draft with our Message-ID, send it and read back the Sent Items copy.

        In-Reply-To and References are not sent: Graph's JSON has no field for them (use
        :meth:`reply`). A send whose outcome is unknown raises :class:`DeliveryUnknown`
        unless its Message-ID turns up in Sent Items."""
        await self._admit()
        draft = await self._channel.call(
            "POST", "/messages", action="send", json=self._mail.draft(message)
        )
        return await self._submit(self._mail.expect_item(draft, "send"), message, "send")

    async def reply(self, original: MessageRef, message: OutgoingMessage) -> MessageRef:
        """Reply to the received message ``original`` in its conversation: createReply (Graph
        sets In-Reply-To, References and conversationId), PATCH in our subject, body and
        Message-ID (settable while the draft is a draft), then send and read back."""
        if message.in_reply_to not in (None, original.message_id):
            raise self._permanent(
                f"the reply's In-Reply-To {message.in_reply_to} is not the original "
                f"{original.message_id}: Graph threads a reply on the message it answers"
            )
        item, _ = await self._mail.resolve(original, action="reply")
        await self._admit()
        draft = self._mail.expect_item(
            await self._channel.call(
                "POST", f"/messages/{_segment(item['id'])}/createReply", action="reply"
            ),
            "reply",
        )
        try:
            draft = self._mail.expect_item(
                await self._channel.call(
                    "PATCH",
                    f"/messages/{_segment(draft['id'])}",
                    action="reply",
                    json=self._mail.reply_patch(message),
                ),
                "reply",
            )
        except ProviderError:
            await self._mail.discard(draft["id"])
            raise
        return await self._submit(draft, message, "reply")

    async def _admit(self) -> None:
        """Client-side sending limits: quota first (no wait helps), then the per-minute pace."""
        try:
            self._recipients.check("Exchange Online recipients")
            await self._send_pace.acquire(1, max_wait=self.policy.max_wait)
        except ProviderError as exc:
            exc.provider, exc.account_id = self.name, self.account.id
            raise

    async def _submit(
        self, draft: dict[str, Any], message: OutgoingMessage, action: str
    ) -> MessageRef:
        draft_id = str(draft["id"])
        try:
            await self._channel.call(
                "POST",
                f"/messages/{_segment(draft_id)}/send",
                action=action,
                unsafe=True,
                permission="Mail.Send",
            )
        except OutcomeUnknown as unknown:
            self._recipients.add()  # it may have gone out: count it
            found = await self._mail.sent_copy(message.message_id, self._sent_wait())
            if found is None:
                raise DeliveryUnknown(
                    f"Graph {action}: {unknown}; {message.message_id} did not appear in Sent "
                    "Items, so it may or may not have gone out (not resent)",
                    provider=self.name,
                    account_id=self.account.id,
                ) from None
            return found
        except ProviderError:
            # Refused outright (bad recipient, throttled, ...): nothing went out, and the
            # engine will try again with a new draft.
            await self._mail.discard(draft_id)
            raise
        self._recipients.add()
        return await self._mail.read_back(draft, message, self._sent_wait())

    def _sent_wait(self) -> datetime:
        return self.context.clock.now() + timedelta(seconds=self.settings.sent_copy_wait_seconds)

    # -- receiving -------------------------------------------------------------------------

    async def locate(self, message_ids: Sequence[str]) -> dict[str, Located]:
        """Find received copies in Inbox and Junk Email by internetMessageId (batched)."""
        if not message_ids:
            return {}
        return await self._mail.locate(message_ids, action="locate")

    async def list_recent(self, since: datetime) -> list[Located]:
        """Received messages in Inbox and Junk Email since ``since``, oldest first."""
        return await self._mail.list_recent(since)

    async def mark_read(self, ref: MessageRef) -> None:
        """Set isRead (skipped when already read)."""
        await self._update(ref, "mark_read", {"isRead": True}, done=lambda m: bool(m.get("isRead")))

    async def mark_important(self, ref: MessageRef) -> None:
        """Set importance to high."""
        await self._update(
            ref,
            "mark_important",
            {"importance": "high"},
            done=lambda m: str(m.get("importance", "")).lower() == "high",
        )

    async def flag(self, ref: MessageRef) -> None:
        """Flag for follow-up (Outlook's star)."""
        await self._update(
            ref,
            "flag",
            {"flag": {"flagStatus": "flagged"}},
            done=lambda m: (m.get("flag") or {}).get("flagStatus") == "flagged",
        )

    async def _update(
        self,
        ref: MessageRef,
        action: str,
        patch: dict[str, Any],
        *,
        done: Callable[[dict[str, Any]], bool],
    ) -> None:
        item, _ = await self._mail.resolve(ref, action=action)
        if not done(item):
            await self._channel.call(
                "PATCH", f"/messages/{_segment(item['id'])}", action=action, json=patch
            )

    async def move_to_inbox(self, ref: MessageRef) -> MessageRef:
        """Move a message from Junk Email to the Inbox (its immutable id stays the same).
        Anything not in Junk Email raises :class:`UnsupportedAction`: nothing to rescue."""
        item, folder = await self._mail.resolve(ref, action="move_to_inbox")
        if folder != "junkemail":
            raise UnsupportedAction(
                f"message {ref.message_id} is in {folder}, not in Junk Email: nothing to rescue",
                provider=self.name,
                account_id=self.account.id,
            )
        moved = self._mail.expect_item(
            await self._channel.call(
                "POST",
                f"/messages/{_segment(item['id'])}/move",
                action="move_to_inbox",
                json={"destinationId": "inbox"},
            ),
            "move_to_inbox",
        )
        return await self._mail.ref(moved)

    # -- checking and closing --------------------------------------------------------------

    async def check(self) -> CheckReport:
        """Token, mailbox identity, Inbox and Junk Email, and the granted permissions."""
        checks: dict[str, bool] = {}
        problems: list[str] = []
        try:
            await self._tokens.access_token()
            checks["token"] = True
        except (ProviderError, MissingExtra) as exc:
            return CheckReport(ok=False, checks={"token": False}, problems=(str(exc),))
        try:
            checks["mailbox"] = await self._mail.is_own_mailbox(problems)
        except ProviderError as exc:
            checks["mailbox"] = False
            problems.append(f"the mailbox is not reachable: {exc}")
        try:
            await self._mail.folder_ids()
            checks["folders"] = True
        except ProviderError as exc:
            checks["folders"] = False
            problems.append(f"the Inbox or Junk Email folder is not reachable: {exc}")
        missing = self._mail.missing_permissions(self._tokens.scopes)
        checks["permissions"] = not missing
        if missing:
            problems.append(
                f"the token lacks {', '.join(missing)}: add the delegated Microsoft Graph "
                "permission(s) to the app registration, grant consent, then reconnect"
            )
        return CheckReport(ok=all(checks.values()), checks=checks, problems=tuple(problems))

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        await self._channel.aclose()

    def _permanent(self, message: str) -> PermanentProviderError:
        return PermanentProviderError(message, provider=self.name, account_id=self.account.id)


def _settings(
    account: EmailAccount, settings: GraphSettings | dict[str, Any] | None
) -> GraphSettings:
    if isinstance(settings, GraphSettings):
        return settings
    try:
        return GraphSettings.model_validate(settings or {})
    except ValidationError as exc:
        raise ConfigurationError(f"account {account.address}: bad graph settings: {exc}") from None


def _segment(item_id: Any) -> str:
    """An id as one URL path segment (immutable ids may contain ``/``, ``+`` and ``=``)."""
    return quote(str(item_id), safe="")
