"""Microsoft Graph's JSON and OData, as pure functions: request bodies, filters, results.

Field names follow the v1.0 message resource
(https://learn.microsoft.com/graph/api/resources/message). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from mailwarm._models import Placement
from mailwarm.content import text_to_html
from mailwarm.engine import Located, MessageRef, OutgoingMessage

__all__ = [
    "FOLDERS",
    "GRAPH_SCOPES",
    "MESSAGE_FIELDS",
    "PLACEMENT",
    "REQUIRED_PERMISSIONS",
    "draft_payload",
    "id_filters",
    "located",
    "odata_string",
    "query_string",
    "recipient",
    "reply_patch",
    "sender_address",
    "since_filter",
    "x_headers",
]

# Delegated Microsoft Graph permissions: Mail.ReadWrite (drafts, flags, moves), Mail.Send,
# and User.Read for check() to read the signed-in user's address (GET /me needs it; the mail
# permissions do not cover it). msal adds offline_access, openid and profile itself.
REQUIRED_PERMISSIONS = ("Mail.ReadWrite", "Mail.Send", "User.Read")
GRAPH_SCOPES = tuple(f"https://graph.microsoft.com/{name}" for name in REQUIRED_PERMISSIONS)

# Received mail lives in these two well-known folders; Sent Items is never searched, so the
# sender's own copy can never count as received.
FOLDERS = ("inbox", "junkemail")
PLACEMENT = {"inbox": Placement.INBOX, "junkemail": Placement.SPAM}

# $select keeps responses small (the list-messages page recommends it); these are the fields
# a Located is built from.
MESSAGE_FIELDS = (
    "id",
    "internetMessageId",
    "subject",
    "from",
    "isRead",
    "flag",
    "importance",
    "parentFolderId",
    "conversationId",
    "receivedDateTime",
)

# Graph, like most web front ends, refuses very long URLs; an internetMessageId filter is
# split into requests whose encoded $filter stays under this many characters.
MAX_FILTER_CHARS = 1500


def query_string(params: Mapping[str, str | int]) -> str:
    """An OData query string: ``$`` kept literal in the names, values percent-encoded but for
    commas (spaces as ``%20``: the form of learn.microsoft.com's query-parameter examples)."""
    return "&".join(f"{key}={quote(str(value), safe=',')}" for key, value in params.items())


def odata_string(value: str) -> str:
    """An OData string literal: single quotes around it, inner ones doubled (OData ABNF
    ``SQUOTE-in-string``)."""
    return "'" + value.replace("'", "''") + "'"


def id_filters(message_ids: Sequence[str], *, limit: int = MAX_FILTER_CHARS) -> Iterator[str]:
    """``internetMessageId eq '<a>' or internetMessageId eq '<b>' ...`` filters covering every
    id once, each short enough for one URL."""
    clauses: list[str] = []
    size = 0
    for message_id in dict.fromkeys(message_ids):
        clause = f"internetMessageId eq {odata_string(message_id)}"
        cost = len(quote(clause, safe="")) + len(quote(" or ", safe=""))
        if clauses and size + cost > limit:
            yield " or ".join(clauses)
            clauses, size = [], 0
        clauses.append(clause)
        size += cost
    if clauses:
        yield " or ".join(clauses)


def since_filter(since: datetime) -> str:
    """``receivedDateTime ge ...`` in UTC. With ``$orderby=receivedDateTime desc`` this obeys
    Graph's rule for $filter with $orderby (the sorted property comes first in the filter),
    which other filters break with 400 InefficientFilter."""
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    return f"receivedDateTime ge {since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def recipient(address: str, name: str | None = None) -> dict[str, Any]:
    """A recipient resource: ``{"emailAddress": {"address": ..., "name": ...}}``."""
    email: dict[str, str] = {"address": address}
    if name:
        email["name"] = name
    return {"emailAddress": email}


def x_headers(mime: EmailMessage) -> list[dict[str, str]]:
    """The custom headers of ``mime`` that Graph accepts: only names starting with ``x-``.

    Graph refuses any other name in internetMessageHeaders (400 InvalidInternetMessageHeader,
    "should start with 'x-' or 'X-'"), so In-Reply-To and References cannot travel this way:
    replies get them from Graph's own createReply instead.
    """
    return [
        {"name": name, "value": str(value)}
        for name, value in mime.items()
        if name.lower().startswith("x-")
    ]


def draft_payload(message: OutgoingMessage) -> dict[str, Any]:
    """The JSON for POST /messages (create a draft) carrying our Message-ID.

    internetMessageId is "updatable only if isDraft is true" (message resource), so the draft
    takes it and the sent message keeps it.
    """
    payload: dict[str, Any] = {
        "subject": message.subject,
        "body": {"contentType": "html", "content": text_to_html(message.text)},
        "toRecipients": [recipient(message.recipient, message.recipient_name)],
        "from": recipient(message.sender, message.sender_name),
        "internetMessageId": message.message_id,
    }
    headers = x_headers(message.to_mime())
    if headers:
        payload["internetMessageHeaders"] = headers
    return payload


def reply_patch(message: OutgoingMessage) -> dict[str, Any]:
    """The PATCH for a createReply draft: our subject, body, recipient and Message-ID. Graph
    already set In-Reply-To, References and the conversation from the original."""
    return {
        "subject": message.subject,
        "body": {"contentType": "html", "content": text_to_html(message.text)},
        "toRecipients": [recipient(message.recipient, message.recipient_name)],
        "internetMessageId": message.message_id,
    }


def sender_address(item: Mapping[str, Any]) -> str | None:
    """The ``from`` address of a message resource, lower-case, if it has one."""
    sender = item.get("from") or {}
    address = (sender.get("emailAddress") or {}).get("address")
    return str(address).lower() if address else None


def located(item: Mapping[str, Any], folder: str) -> Located:
    """A received message found in well-known ``folder`` (``inbox`` or ``junkemail``)."""
    flag = item.get("flag") or {}
    return Located(
        MessageRef(
            message_id=str(item["internetMessageId"]),
            provider_id=str(item["id"]),
            folder=folder,
            thread_id=item.get("conversationId"),
        ),
        PLACEMENT.get(folder, Placement.UNKNOWN),
        sender=sender_address(item),
        subject=item.get("subject"),
        seen=bool(item.get("isRead")),
        flagged=flag.get("flagStatus") == "flagged",
        important=str(item.get("importance", "")).lower() == "high",
    )
