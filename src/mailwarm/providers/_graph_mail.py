"""Mailbox operations on Graph shared by the provider's methods: finding received messages,
resolving references, reading back sent ones. :mod:`.graph` composes them into the
:class:`~mailwarm.Provider` methods."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from mailwarm._errors import PermanentProviderError, ProviderError
from mailwarm.engine import Located, MessageRef, OutgoingMessage
from mailwarm.providers._graph_http import GraphChannel, GraphNotFound
from mailwarm.providers._graph_wire import (
    FOLDERS,
    MESSAGE_FIELDS,
    REQUIRED_PERMISSIONS,
    draft_payload,
    id_filters,
    located,
    odata_string,
    reply_patch,
    sender_address,
    since_filter,
)

__all__ = ["GraphMail"]

log = logging.getLogger(__name__)

_SELECT = ",".join(MESSAGE_FIELDS)
_SENT_SELECT = "id,internetMessageId,conversationId,parentFolderId,isDraft"
# The Sent Items copy "might not succeed immediately after the message is sent"
# (outlook-immutable-id): poll with doubling waits up to this one.
_MAX_POLL_WAIT = 8.0


class GraphMail:
    """Message-level operations for one mailbox (``address`` is its own, lower-cased)."""

    def __init__(self, channel: GraphChannel, address: str, page_size: int) -> None:
        self.channel = channel
        self.address = address.lower()
        self.page_size = page_size
        self._folders: dict[str, str] = {}

    def _permanent(self, message: str) -> PermanentProviderError:
        return PermanentProviderError(
            message, provider=self.channel.provider, account_id=self.channel.account_id
        )

    def expect_item(self, body: Any, action: str) -> dict[str, Any]:
        """``body`` as a message resource, or a permanent error if it is not one."""
        if not isinstance(body, dict) or "id" not in body:
            raise self._permanent(f"Graph {action}: the answer carries no message")
        return body

    def draft(self, message: OutgoingMessage) -> dict[str, Any]:
        """The create-draft JSON for ``message``."""
        return draft_payload(message)

    def reply_patch(self, message: OutgoingMessage) -> dict[str, Any]:
        """The PATCH turning a createReply draft into ``message``."""
        return reply_patch(message)

    # -- folders ----------------------------------------------------------------------------

    async def folder_ids(self) -> dict[str, str]:
        """Ids of the Inbox and Junk Email folders, fetched once (folder ids never change)."""
        for name in FOLDERS:
            if name not in self._folders:
                body = await self.channel.call(
                    "GET", f"/mailFolders/{name}", action="folders", params={"$select": "id"}
                )
                self._folders[name] = str(self.expect_item(body, "folders")["id"])
        return dict(self._folders)

    async def folder_of(self, item: dict[str, Any]) -> str:
        """``inbox``, ``junkemail``, or the raw parentFolderId of any other folder."""
        parent = str(item.get("parentFolderId", ""))
        for name, folder_id in (await self.folder_ids()).items():
            if folder_id == parent:
                return name
        return parent or "unknown"

    async def ref(self, item: dict[str, Any]) -> MessageRef:
        """The reference of a message resource, its folder as a well-known name."""
        return MessageRef(
            str(item["internetMessageId"]),
            str(item["id"]),
            await self.folder_of(item),
            item.get("conversationId"),
        )

    # -- finding ----------------------------------------------------------------------------

    async def search(
        self, message_ids: Iterable[str], *, action: str
    ) -> dict[str, tuple[dict[str, Any], str]]:
        """Received copies by Message-ID: ``{id: (message, folder)}``, Inbox before Junk."""
        wanted = {mid.lower(): mid for mid in message_ids}
        found: dict[str, tuple[dict[str, Any], str]] = {}
        for folder in FOLDERS:
            missing = [mid for mid in wanted.values() if mid not in found]
            for clause in id_filters(missing):
                params: dict[str, str | int] = {
                    "$filter": clause,
                    "$select": _SELECT,
                    "$top": self.page_size,
                }
                async for page in self.channel.pages(
                    f"/mailFolders/{folder}/messages", params, action=action
                ):
                    for item in page:
                        mid = wanted.get(str(item.get("internetMessageId", "")).lower())
                        # A message from this mailbox itself (to itself) is not "received".
                        if mid is None or mid in found or sender_address(item) == self.address:
                            continue
                        found[mid] = (item, folder)
        return found

    async def locate(self, message_ids: Sequence[str], *, action: str) -> dict[str, Located]:
        """:meth:`search`, as :class:`Located` results."""
        found = await self.search(message_ids, action=action)
        return {mid: located(item, folder) for mid, (item, folder) in found.items()}

    async def list_recent(self, since: datetime) -> list[Located]:
        """Received messages since ``since`` in Inbox and Junk Email, oldest first."""
        params: dict[str, str | int] = {
            "$filter": since_filter(since),
            "$orderby": "receivedDateTime desc",
            "$select": _SELECT,
            "$top": self.page_size,
        }
        results: list[tuple[str, Located]] = []
        for folder in FOLDERS:
            async for page in self.channel.pages(
                f"/mailFolders/{folder}/messages", params, action="list_recent"
            ):
                results.extend(
                    (str(item.get("receivedDateTime", "")), located(item, folder))
                    for item in page
                    if item.get("internetMessageId") and sender_address(item) != self.address
                )
        results.sort(key=lambda pair: pair[0])
        return [found for _, found in results]

    async def resolve(self, ref: MessageRef, *, action: str) -> tuple[dict[str, Any], str]:
        """The received message ``ref`` names, and its folder (``inbox`` or ``junkemail``).

        Its immutable id is tried first; a handle that no longer works (or never did) is
        re-resolved by Message-ID. The Sent copy never matches."""
        if ref.provider_id:
            try:
                body = await self.channel.call(
                    "GET",
                    f"/messages/{quote(ref.provider_id, safe='')}",
                    action=action,
                    params={"$select": _SELECT},
                )
            except PermanentProviderError:
                body = None  # 404, or 400 ErrorInvalidIdMalformed for a foreign handle
            if (
                isinstance(body, dict)
                and str(body.get("internetMessageId", "")).lower() == ref.message_id.lower()
                and sender_address(body) != self.address
            ):
                folder = await self.folder_of(body)
                if folder in FOLDERS:
                    return body, folder
        found = await self.search([ref.message_id], action=action)
        if ref.message_id in found:
            return found[ref.message_id]
        raise self._permanent(
            f"message {ref.message_id} is not in the Inbox or Junk Email of this mailbox"
        )

    def missing_permissions(self, scopes: Iterable[str]) -> list[str]:
        """Which required delegated permissions ``scopes`` lack (short names, in order)."""
        granted = {scope.rsplit("/", 1)[-1].lower() for scope in scopes}
        return [name for name in REQUIRED_PERMISSIONS if name.lower() not in granted]

    async def is_own_mailbox(self, problems: list[str]) -> bool:
        """Whether the token opens this account's mailbox (its mail or userPrincipalName)."""
        body = await self.channel.call(
            "GET", "", action="check", params={"$select": "mail,userPrincipalName"}
        )
        user = body if isinstance(body, dict) else {}
        names = {str(user.get(key) or "").lower() for key in ("mail", "userPrincipalName")}
        if self.address in names:
            return True
        other = user.get("mail") or user.get("userPrincipalName") or "another user"
        problems.append(
            f"the Microsoft sign-in opens the mailbox of {other}, not {self.address}: "
            f"reconnect the account signed in as {self.address}"
        )
        return False

    # -- after a send ------------------------------------------------------------------------

    async def discard(self, draft_id: str) -> None:
        """Delete a draft that will not be sent (best effort: a leftover draft is harmless)."""
        try:
            await self.channel.call(
                "DELETE", f"/messages/{quote(draft_id, safe='')}", action="discard_draft"
            )
        except ProviderError as exc:
            log.info("could not delete an unsent Graph draft: %s", exc)

    async def read_back(
        self, draft: dict[str, Any], message: OutgoingMessage, deadline: datetime
    ) -> MessageRef:
        """The Sent Items copy of a sent draft: same immutable id, possibly a moment late.

        The message has gone out whatever happens here, so no error leaves this method: if
        the copy does not show up by ``deadline``, the reference is built from the draft."""
        clock = self.channel.clock
        path = f"/messages/{quote(str(draft['id']), safe='')}"
        wait = 1.0
        while True:
            try:
                body = await self.channel.call(
                    "GET", path, action="read_back", params={"$select": _SENT_SELECT}
                )
            except GraphNotFound:
                body = None
            except ProviderError as exc:
                log.info("Graph read-back of %s failed: %s", message.message_id, exc)
                break
            if isinstance(body, dict) and body.get("id") and not body.get("isDraft"):
                actual = str(body.get("internetMessageId") or message.message_id)
                if actual != message.message_id:
                    # Exchange normally keeps the Message-ID set on the draft; if it did not,
                    # report the one the recipient will see.
                    log.warning("Graph sent %s as %s", message.message_id, actual)
                return MessageRef(
                    actual,
                    str(body["id"]),
                    "sentitems",
                    body.get("conversationId") or draft.get("conversationId"),
                )
            now = clock.now()
            if (deadline - now).total_seconds() < wait:
                break
            await clock.sleep_until(now + timedelta(seconds=wait))
            wait = min(wait * 2, _MAX_POLL_WAIT)
        return MessageRef(message.message_id, str(draft["id"]), None, draft.get("conversationId"))

    async def sent_copy(self, message_id: str, deadline: datetime) -> MessageRef | None:
        """Look for ``message_id`` in Sent Items until ``deadline`` (after a send whose outcome
        is unknown). ``None`` if it never shows up or cannot be looked for."""
        clock = self.channel.clock
        params: dict[str, str | int] = {
            "$filter": f"internetMessageId eq {odata_string(message_id)}",
            "$select": _SENT_SELECT,
        }
        wait = 1.0
        while True:
            try:
                async for page in self.channel.pages(
                    "/mailFolders/sentitems/messages", params, action="confirm_send"
                ):
                    for item in page:
                        if str(item.get("internetMessageId", "")).lower() == message_id.lower():
                            return MessageRef(
                                message_id, str(item["id"]), "sentitems", item.get("conversationId")
                            )
            except ProviderError as exc:
                log.info("Graph Sent Items lookup of %s failed: %s", message_id, exc)
            now = clock.now()
            if (deadline - now).total_seconds() < wait:
                return None
            await clock.sleep_until(now + timedelta(seconds=wait))
            wait = min(wait * 2, _MAX_POLL_WAIT)
