"""A stateful fake of Microsoft Graph's mail API and of Entra ID's token endpoint.

``FakeGraph.handle`` answers httpx requests routed to it by respx, with the documented shapes
(message resource fields, ``{"value": [...], "@odata.nextLink": ...}`` collections,
``{"error": {"code", "message"}}`` errors). It keeps several users' mailboxes with
well-known folders, immutable ids (a move keeps the id only under
``Prefer: IdType="ImmutableId"``, as on Graph), conversations, drafts, Sent Items and the raw
MIME each recipient got. It enforces what Graph enforces and the provider must respect:
tokens, permissions, the $filter/$orderby rule (400 InefficientFilter), x- only custom
headers, internetMessageId writable only on drafts, resolvable recipients.

``FakeEntra`` is a requests-like session for msal's ``http_client``: the OpenID discovery
document and a token endpoint that rotates refresh tokens and issues access tokens FakeGraph
accepts.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any
from urllib.parse import unquote

import httpx
from pydantic import SecretStr

import mailwarm as mw
from mailwarm.providers import OAuthApp, ProviderContext
from mailwarm.providers._retry import NO_RETRY, RetryPolicy
from mailwarm.providers.graph import GraphProvider, GraphSettings

ROOT = "https://graph.microsoft.com/v1.0"
LOGIN = "https://login.microsoftonline.com"
IMMUTABLE = 'IdType="ImmutableId"'
CLIENT_ID = "0d5c7a43-app-mailwarm"
CLIENT_SECRET = "s3cret~client~value"  # a test secret: it must never show anywhere
ALL_SCOPES = ("Mail.ReadWrite", "Mail.Send", "User.Read")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- Entra ID --------------------------------------------------------------------------------


@dataclass
class FakeHttpResponse:
    """requests.Response as msal uses it: status_code, text, headers, raise_for_status()."""

    status_code: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise OSError(f"HTTP {self.status_code}")


class FakeEntra:
    """The login.microsoftonline.com endpoints msal calls, for any tenant."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, str]] = {}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> address
        self.access_tokens: dict[str, tuple[str, frozenset[str]]] = {}
        self.granted: dict[str, tuple[str, ...]] = {}  # address -> permissions consented
        self.failures: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.token_calls: list[dict[str, str]] = []  # address and refresh token of each call
        self.discovery_calls = 0
        self.issued: list[str] = []  # refresh tokens handed out by the token endpoint
        self.down = False
        self._serial = itertools.count(1)

    def add_user(self, address: str) -> None:
        n = next(self._serial)
        self.users[address.lower()] = {"oid": f"00000000-0000-0000-0000-{n:012d}", "tid": "tid-1"}

    def connect(self, address: str) -> str:
        """What the OAuth consent flow leaves behind: a refresh token for the user."""
        token = f"rt-{address.lower()}-{next(self._serial)}-{random.getrandbits(48):x}"
        self.refresh_tokens[token] = address.lower()
        return token

    def fail_next(self, address: str, error: str = "invalid_grant", code: int = 70000) -> None:
        """The next token request for ``address`` fails with an OAuth error (400)."""
        self.failures.setdefault(address.lower(), []).append(
            (
                400,
                {"error": error, "error_description": f"AADSTS{code}: test", "error_codes": [code]},
            )
        )

    def mint_access_token(self, address: str) -> str:
        """An access token with every permission, as if msal had fetched it (for raw calls)."""
        token = f"at-direct-{next(self._serial)}"
        self.access_tokens[token] = (address.lower(), frozenset(ALL_SCOPES))
        return token

    def user_for(self, access_token: str) -> tuple[str, frozenset[str]] | None:
        return self.access_tokens.get(access_token)

    def get(self, url: str, params: Any = None, headers: Any = None, **_: Any) -> FakeHttpResponse:
        match = re.fullmatch(rf"{LOGIN}/([^/]+)/v2\.0/\.well-known/openid-configuration", url)
        if match is None:
            return FakeHttpResponse(404, json.dumps({"error": "not_found"}))
        self.discovery_calls += 1
        tenant = match[1]
        base = f"{LOGIN}/{tenant}"
        return FakeHttpResponse(
            200,
            json.dumps(
                {
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "issuer": f"{LOGIN}/{{tenantid}}/v2.0",
                }
            ),
        )

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **_: Any
    ) -> FakeHttpResponse:
        if self.down:
            raise ConnectionError("login.microsoftonline.com unreachable")  # an OSError
        if not re.fullmatch(rf"{LOGIN}/[^/]+/oauth2/v2\.0/token", url):
            return FakeHttpResponse(404, json.dumps({"error": "not_found"}))
        form = dict(data or {})
        basic = (headers or {}).get("Authorization", "")
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if form.get("client_secret") != CLIENT_SECRET and basic != f"Basic {expected}":
            return self._error(401, "invalid_client", 7000215)
        if form.get("grant_type") != "refresh_token":
            return self._error(400, "unsupported_grant_type", 70003)
        used = str(form.get("refresh_token"))
        address = self.refresh_tokens.get(used)
        self.token_calls.append({"address": address or "?", "refresh_token": used})
        if address is None:
            return self._error(400, "invalid_grant", 9002313)
        queued = self.failures.get(address)
        if queued:
            status, body = queued.pop(0)
            return FakeHttpResponse(status, json.dumps(body))
        requested = [
            s
            for s in str(form.get("scope", "")).split()
            if s not in ("openid", "profile", "offline_access")
        ]
        allowed = self.granted.get(address, ALL_SCOPES)
        scopes = [s for s in requested if s.rsplit("/", 1)[-1] in allowed]
        access = f"at-{next(self._serial)}-{random.getrandbits(64):x}"
        rotated = self.connect(address)  # a new refresh token on every use; the old one stays
        self.issued.append(rotated)
        self.access_tokens[access] = (address, frozenset(s.rsplit("/", 1)[-1] for s in scopes))
        user = self.users[address]
        claims = {
            "aud": CLIENT_ID,
            "iss": f"{LOGIN}/{user['tid']}/v2.0",
            "oid": user["oid"],
            "sub": user["oid"],
            "tid": user["tid"],
            "preferred_username": address,
            "name": address.split("@")[0],
            "ver": "2.0",
        }
        return FakeHttpResponse(
            200,
            json.dumps(
                {
                    "token_type": "Bearer",
                    "scope": " ".join(scopes),
                    "expires_in": 3599,
                    "ext_expires_in": 3599,
                    "access_token": access,
                    "refresh_token": rotated,
                    "id_token": f"{_b64({'alg': 'none'})}.{_b64(claims)}.",
                    "client_info": _b64({"uid": user["oid"], "utid": user["tid"]}),
                }
            ),
        )

    def close(self) -> None:
        return None

    @staticmethod
    def _error(status: int, error: str, code: int) -> FakeHttpResponse:
        body = {"error": error, "error_description": f"AADSTS{code}: test", "error_codes": [code]}
        return FakeHttpResponse(status, json.dumps(body))


# -- Graph -----------------------------------------------------------------------------------

WELL_KNOWN = ("inbox", "junkemail", "drafts", "sentitems", "deleteditems", "archive")
# The message resource's properties (learn.microsoft.com/graph/api/resources/message).
MESSAGE_PROPERTIES = frozenset(
    " ".join(
        (
            "bccRecipients body bodyPreview categories ccRecipients changeKey conversationId",
            "conversationIndex createdDateTime flag from hasAttachments id importance",
            "inferenceClassification internetMessageHeaders internetMessageId",
            "isDeliveryReceiptRequested isDraft isRead isReadReceiptRequested",
            "lastModifiedDateTime parentFolderId receivedDateTime replyTo sender sentDateTime",
            "subject toRecipients uniqueBody webLink",
        )
    ).split()
)
DRAFT_ONLY = frozenset({"subject", "body", "toRecipients", "internetMessageId", "from"})
WRITABLE = DRAFT_ONLY | {"isRead", "flag", "importance", "categories", "internetMessageHeaders"}
ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class Item:
    """One message in one mailbox folder."""

    id: str
    folder: str  # folder id
    internet_message_id: str
    conversation_id: str
    subject: str
    body: dict[str, Any]
    sender: dict[str, Any] | None
    to: list[dict[str, Any]]
    created: datetime
    received: datetime
    is_draft: bool = False
    is_read: bool = False
    flag_status: str = "notFlagged"
    importance: str = "normal"
    sent: datetime | None = None
    headers: list[dict[str, str]] = field(default_factory=list)
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    raw: bytes | None = None
    visible_at: datetime | None = None


@dataclass
class Mailbox:
    address: str
    oid: str
    folders: dict[str, str]
    items: dict[str, Item] = field(default_factory=dict)


@dataclass
class Captured:
    method: str
    url: httpx.URL
    headers: httpx.Headers
    body: Any
    at: datetime
    action: str


@dataclass
class Fault:
    status: int
    code: str
    headers: dict[str, str] = field(default_factory=dict)
    refresh_fails: bool = False
    raise_exc: Exception | None = None
    after_processing: bool = False  # the request takes effect, then the answer is lost


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message or code


class FakeGraph:
    """Mailboxes by address; ``handle`` is a respx side effect."""

    def __init__(
        self, clock: mw.VirtualClock, entra: FakeEntra, *, sent_copy_delay: float = 0
    ) -> None:
        self.clock = clock
        self.entra = entra
        self.sent_copy_delay = sent_copy_delay
        self.boxes: dict[str, Mailbox] = {}
        self.requests: list[Captured] = []
        self.errors: list[str] = []  # the error code of every refused request
        self.faults: dict[tuple[str, str], list[Fault]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.yields = 2  # event-loop turns each request takes, so overlaps are visible
        self._scopes: frozenset[str] = frozenset()
        self._ids = itertools.count(1)

    # -- setup and inspection ---------------------------------------------------------------

    def add_mailbox(self, address: str) -> None:
        address = address.lower()
        self.entra.add_user(address)
        folders = {name: self._new_id("AQMkAF") for name in WELL_KNOWN}
        self.boxes[address] = Mailbox(address, self.entra.users[address]["oid"], folders)

    def fail_next(self, address: str, action: str, fault: Fault, times: int = 1) -> None:
        self.faults.setdefault((address.lower(), action), []).extend([fault] * times)

    def items(self, address: str, folder: str | None = None) -> list[Item]:
        box = self.boxes[address.lower()]
        wanted = box.folders.get(folder, folder) if folder else None
        return [i for i in box.items.values() if wanted is None or i.folder == wanted]

    def received_copy(self, address: str, message_id: str) -> Item:
        box = self.boxes[address.lower()]
        (item,) = [
            i
            for i in box.items.values()
            if i.internet_message_id == message_id
            and i.folder not in (box.folders["sentitems"], box.folders["drafts"])
        ]
        return item

    def raw(self, address: str, message_id: str) -> EmailMessage:
        item = self.received_copy(address, message_id)
        assert item.raw is not None
        parsed = message_from_bytes(item.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def _new_id(self, prefix: str = "AAkALg") -> str:
        # Immutable ids are base64 and may hold '-', '_' and '=' (and so need URL-escaping).
        return f"{prefix}AAAAAAAA{next(self._ids):06d}-x_{random.getrandbits(40):010x}="

    # -- the handler --------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(self.yields):
                await asyncio.sleep(0)
            return self._dispatch(request)
        finally:
            self.in_flight -= 1

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path.decode().split("?", 1)[0]
        parts = [unquote(p) for p in raw_path.split("/") if p]
        body = json.loads(request.content) if request.content else None
        try:
            if parts[:1] != ["v1.0"]:
                raise GraphError(400, "BadRequest", "unsupported API version")
            box, rest = self._mailbox(request, parts[1:])
            action = self._action(request.method, rest, request.url.params, body)
            self.requests.append(
                Captured(
                    request.method, request.url, request.headers, body, self.clock.now(), action
                )
            )
            fault = self._fault(box, action)
            if fault is not None and not fault.after_processing:
                return self._fault_response(box, fault)
            response = self._route(request, box, rest, body)
            if fault is not None:
                return self._fault_response(box, fault)
            return response
        except GraphError as exc:
            self.errors.append(exc.code)
            return httpx.Response(
                exc.status, json={"error": {"code": exc.code, "message": exc.message}}
            )

    def _fault(self, box: Mailbox, action: str) -> Fault | None:
        queue = self.faults.get((box.address, action))
        return queue.pop(0) if queue else None

    def _fault_response(self, box: Mailbox, fault: Fault) -> httpx.Response:
        if fault.raise_exc is not None:
            raise fault.raise_exc
        if fault.refresh_fails:
            self.entra.fail_next(box.address)
        return httpx.Response(
            fault.status,
            headers=fault.headers,
            json={"error": {"code": fault.code, "message": "injected"}},
        )

    def _mailbox(self, request: httpx.Request, parts: list[str]) -> tuple[Mailbox, list[str]]:
        auth = request.headers.get("Authorization", "")
        holder = (
            self.entra.user_for(auth.removeprefix("Bearer "))
            if auth.startswith("Bearer ")
            else None
        )
        if holder is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        address, scopes = holder
        self._scopes = scopes
        box = self.boxes[address]
        if parts[:1] == ["me"]:
            return box, parts[1:]
        if parts[:1] == ["users"] and len(parts) >= 2:
            if parts[1].lower() not in (box.address, box.oid):
                raise GraphError(403, "ErrorAccessDenied", "Access is denied.")
            return box, parts[2:]
        raise GraphError(400, "BadRequest", "Resource not found for the segment.")

    @staticmethod
    def _action(method: str, rest: list[str], params: httpx.QueryParams, body: Any) -> str:
        tail = rest[2] if len(rest) > 2 else ""
        if not rest:
            return "check"
        if rest[0] == "mailFolders":
            if len(rest) == 2:
                return "folders"
            query = params.get("$filter", "")
            if rest[1] == "sentitems":
                return "confirm_send"
            return "locate" if "internetMessageId" in query else "list_recent"
        if method == "POST" and len(rest) == 1:
            return "create_draft"
        if method == "PATCH":
            for key, action in (
                ("isRead", "mark_read"),
                ("flag", "flag"),
                ("importance", "mark_important"),
            ):
                if key in (body or {}):
                    return action
            return "update_draft"
        return {"send": "send", "createReply": "reply", "move": "move_to_inbox"}.get(
            tail, method.lower()
        )

    def _need(self, permission: str) -> None:
        if permission not in self._scopes:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials.")

    def _route(
        self, request: httpx.Request, box: Mailbox, rest: list[str], body: Any
    ) -> httpx.Response:
        method, params = request.method, request.url.params
        immutable = IMMUTABLE in request.headers.get("Prefer", "")
        if not rest and method == "GET":
            self._need("User.Read")
            user = {
                "id": box.oid,
                "displayName": box.address,
                "mail": box.address,
                "userPrincipalName": box.address,
            }
            return httpx.Response(200, json=_select(user, params, known=set(user)))
        self._need("Mail.ReadWrite")
        if rest[0] == "mailFolders" and len(rest) == 2 and method == "GET":
            folder = self._folder(box, rest[1])
            name = next(n for n, i in box.folders.items() if i == folder)
            return httpx.Response(
                200, json={"id": folder, "displayName": name, "totalItemCount": 0}
            )
        if (
            rest[0] == "mailFolders"
            and len(rest) == 3
            and rest[2] == "messages"
            and method == "GET"
        ):
            return self._list(request, box, self._folder(box, rest[1]))
        if rest == ["messages"] and method == "POST":
            return httpx.Response(201, json=self._render(box, self._create(box, body or {})))
        if rest[0] != "messages" or len(rest) < 2:
            raise GraphError(400, "BadRequest", "Resource not found for the segment.")
        item = self._item(box, rest[1])
        verb = rest[2] if len(rest) > 2 else ""
        if not verb and method == "GET":
            return httpx.Response(200, json=self._render(box, item, params))
        if not verb and method == "PATCH":
            self._patch(item, body or {})
            return httpx.Response(200, json=self._render(box, item))
        if not verb and method == "DELETE":
            del box.items[item.id]
            return httpx.Response(204)
        if verb == "send" and method == "POST":
            self._need("Mail.Send")
            self._send(box, item)
            return httpx.Response(202)
        if verb == "createReply" and method == "POST":
            return httpx.Response(201, json=self._render(box, self._create_reply(box, item)))
        if verb == "move" and method == "POST":
            moved = self._move(box, item, str((body or {}).get("destinationId", "")), immutable)
            return httpx.Response(201, json=self._render(box, moved))
        raise GraphError(405, "ErrorInvalidRequest", "The OData request is not supported.")

    # -- resources ----------------------------------------------------------------------------

    def _folder(self, box: Mailbox, key: str) -> str:
        if key.lower() in box.folders:
            return box.folders[key.lower()]
        if key in box.folders.values():
            return key
        raise GraphError(404, "ErrorItemNotFound", "The specified folder could not be found.")

    def _item(self, box: Mailbox, item_id: str) -> Item:
        if not item_id.startswith("AAkALg"):
            raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        item = box.items.get(item_id)
        if item is None or (item.visible_at is not None and item.visible_at > self.clock.now()):
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found.")
        return item

    def _render(
        self, box: Mailbox, item: Item, params: httpx.QueryParams | None = None
    ) -> dict[str, Any]:
        full: dict[str, Any] = {
            "@odata.etag": f'W/"{item.id[-8:]}"',
            "id": item.id,
            "createdDateTime": iso(item.created),
            "lastModifiedDateTime": iso(self.clock.now()),
            "changeKey": item.id[-8:],
            "categories": [],
            "receivedDateTime": iso(item.received),
            "sentDateTime": iso(item.sent) if item.sent else None,
            "hasAttachments": False,
            "internetMessageId": item.internet_message_id,
            "subject": item.subject,
            "bodyPreview": re.sub(r"<[^>]+>", "", str(item.body.get("content", "")))[:255],
            "importance": item.importance,
            "parentFolderId": item.folder,
            "conversationId": item.conversation_id,
            "conversationIndex": "AQHa",
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False,
            "isRead": item.is_read,
            "isDraft": item.is_draft,
            "webLink": f"https://outlook.office365.com/owa/?ItemID={item.id}",
            "inferenceClassification": "focused",
            "body": item.body,
            "sender": item.sender,
            "from": item.sender,
            "toRecipients": item.to,
            "ccRecipients": [],
            "bccRecipients": [],
            "replyTo": [],
            "flag": {"flagStatus": item.flag_status},
        }
        headers = list(item.headers)
        if item.in_reply_to:
            headers += [
                {"name": "In-Reply-To", "value": item.in_reply_to},
                {"name": "References", "value": " ".join(item.references)},
            ]
        return _select(
            full, params, known=MESSAGE_PROPERTIES, extra={"internetMessageHeaders": headers}
        )

    def _create(self, box: Mailbox, body: dict[str, Any]) -> Item:
        unknown = set(body) - WRITABLE
        if unknown:
            raise GraphError(
                400, "RequestBodyRead", f"The property '{sorted(unknown)[0]}' does not exist."
            )
        headers = list(body.get("internetMessageHeaders") or [])
        for header in headers:
            if not str(header.get("name", "")).lower().startswith("x-"):
                raise GraphError(
                    400,
                    "InvalidInternetMessageHeader",
                    f"The internet message header name '{header.get('name')}' should start "
                    "with 'x-' or 'X-'.",
                )
        sender = body.get("from") or {"emailAddress": {"address": box.address}}
        if str(sender["emailAddress"]["address"]).lower() != box.address:
            raise GraphError(
                403,
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the "
                "right to send mail on behalf of the specified sending account.",
            )
        now = self.clock.now()
        item = Item(
            id=self._new_id(),
            folder=box.folders["drafts"],
            internet_message_id=body.get("internetMessageId")
            or f"<{self._new_id('M')}@fake.prod.outlook.com>",
            conversation_id=self._new_id("AAQkAD"),
            subject=str(body.get("subject", "")),
            body=dict(body.get("body") or {"contentType": "text", "content": ""}),
            sender=sender,
            to=list(body.get("toRecipients") or []),
            created=now,
            received=now,
            is_draft=True,
            is_read=True,
            headers=headers,
        )
        box.items[item.id] = item
        return item

    def _patch(self, item: Item, body: dict[str, Any]) -> None:
        unknown = set(body) - WRITABLE
        if unknown or "internetMessageHeaders" in body:
            raise GraphError(400, "ErrorInvalidProperty", "This property can't be updated.")
        if not item.is_draft and DRAFT_ONLY & set(body):
            raise GraphError(
                400,
                "ErrorInvalidPropertyUpdateSentMessage",
                "Update of a sent message is not allowed.",
            )
        for key, value in body.items():
            if key == "subject":
                item.subject = str(value)
            elif key == "body":
                item.body = dict(value)
            elif key == "toRecipients":
                item.to = list(value)
            elif key == "internetMessageId":
                item.internet_message_id = str(value)
            elif key == "isRead":
                item.is_read = bool(value)
            elif key == "flag":
                item.flag_status = str(value.get("flagStatus", "notFlagged"))
            elif key == "importance":
                if str(value).lower() not in ("low", "normal", "high"):
                    raise GraphError(400, "ErrorInvalidRequest", "Invalid importance.")
                item.importance = str(value).lower()

    def _send(self, box: Mailbox, draft: Item) -> None:
        if not draft.is_draft:
            raise GraphError(400, "ErrorInvalidOperation", "Only drafts can be sent.")
        addresses = [str(r.get("emailAddress", {}).get("address", "")) for r in draft.to]
        bad = [a for a in addresses if not ADDRESS.match(a)]
        if not addresses or bad:
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                f"At least one recipient isn't valid., Recipient '{bad[0] if bad else ''}' "
                "isn't resolved. All recipients must be resolved before a message can be "
                "submitted.",
            )
        now = self.clock.now()
        draft.raw = _mime(draft, now)
        draft.is_draft, draft.sent, draft.received = False, now, now
        draft.folder = box.folders["sentitems"]
        if self.sent_copy_delay:
            draft.visible_at = now + timedelta(seconds=self.sent_copy_delay)
        for address in addresses:
            target, junk = self._resolve(address)
            if target is None:
                continue  # outside this fake tenant: it leaves for the internet
            copy = replace(
                draft,
                id=self._new_id(),
                folder=target.folders["junkemail" if junk else "inbox"],
                conversation_id=self._thread(target, draft),
                is_read=False,
                visible_at=None,
            )
            target.items[copy.id] = copy

    def _resolve(self, address: str) -> tuple[Mailbox | None, bool]:
        local, _, domain = address.lower().rpartition("@")
        base, _, tag = local.partition("+")
        box = self.boxes.get(address.lower()) or self.boxes.get(f"{base}@{domain}")
        return box, tag in ("junk", "spam")

    def _thread(self, box: Mailbox, item: Item) -> str:
        # Exchange files a message into the conversation of the message it answers.
        for parent in (item.in_reply_to, *reversed(item.references)):
            for other in box.items.values():
                if parent and other.internet_message_id == parent:
                    return other.conversation_id
        return self._new_id("AAQkAD")

    def _create_reply(self, box: Mailbox, original: Item) -> Item:
        if original.is_draft:
            raise GraphError(400, "ErrorInvalidOperation", "Can't reply to a draft.")
        now = self.clock.now()
        draft = Item(
            id=self._new_id(),
            folder=box.folders["drafts"],
            internet_message_id=f"<{self._new_id('R')}@fake.prod.outlook.com>",
            conversation_id=original.conversation_id,
            subject=f"RE: {original.subject}",
            body={"contentType": "html", "content": "<html><body><hr>quoted</body></html>"},
            sender={"emailAddress": {"address": box.address}},
            to=[original.sender] if original.sender else [],
            created=now,
            received=now,
            is_draft=True,
            is_read=True,
            in_reply_to=original.internet_message_id,
            references=(*original.references, original.internet_message_id),
        )
        box.items[draft.id] = draft
        return draft

    def _move(self, box: Mailbox, item: Item, destination: str, immutable: bool) -> Item:
        item.folder = self._folder(box, destination)
        if not immutable:
            # Without the Prefer header Graph hands out the copy's new id, and the old is gone.
            del box.items[item.id]
            item.id = self._new_id()
            box.items[item.id] = item
        return item

    def _list(self, request: httpx.Request, box: Mailbox, folder: str) -> httpx.Response:
        params = request.url.params
        now = self.clock.now()
        items = [
            i for i in box.items.values() if i.folder == folder and (i.visible_at or now) <= now
        ]
        order = [p.split()[0] for p in params.get("$orderby", "").split(",") if p.strip()]
        if "$filter" in params:
            predicate, properties = parse_filter(params["$filter"])
            # learn.microsoft.com, user-list-messages: $orderby properties must appear in the
            # $filter, in the same order, before any other property.
            if order and properties[: len(order)] != order:
                raise GraphError(
                    400,
                    "InefficientFilter",
                    "The restriction or sort order is too complex for this operation.",
                )
            items = [i for i in items if predicate(i)]
        descending = "desc" in params.get("$orderby", "receivedDateTime desc")
        key = order[0] if order else "receivedDateTime"
        items.sort(key=lambda i: _value(i, key), reverse=descending)
        top = int(params.get("$top", "10"))
        if not 1 <= top <= 1000:
            raise GraphError(400, "ErrorInvalidRequest", "$top must be between 1 and 1000.")
        skip = int(params.get("$skip", "0"))
        page = items[skip : skip + top]
        result: dict[str, Any] = {
            "@odata.context": f"{ROOT}/$metadata#users('{box.oid}')/messages",
            "value": [self._render(box, i, params) for i in page],
        }
        if skip + top < len(items):
            query = {k: v for k, v in params.multi_items() if k != "$skip"}
            result["@odata.nextLink"] = str(
                request.url.copy_with(params={**query, "$skip": str(skip + top)})
            )
        return httpx.Response(200, json=result)


def _select(
    full: dict[str, Any],
    params: httpx.QueryParams | None,
    *,
    known: Iterable[str],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    selected = [s.strip() for s in (params or {}).get("$select", "").split(",") if s.strip()]
    if not selected:
        return full
    unknown = [s for s in selected if s not in known]
    if unknown:
        raise GraphError(400, "BadRequest", f"Could not find a property named '{unknown[0]}'.")
    values = {**full, **(extra or {})}
    return {
        "@odata.etag": full.get("@odata.etag"),
        "id": full.get("id"),
        **{s: values.get(s) for s in selected},
    }


def _mime(item: Item, when: datetime) -> bytes:
    msg = EmailMessage()
    sender = (item.sender or {}).get("emailAddress", {})
    msg["From"] = formataddr((sender.get("name", ""), sender.get("address", "")))
    msg["To"] = ", ".join(
        formataddr((r["emailAddress"].get("name", ""), r["emailAddress"]["address"]))
        for r in item.to
    )
    msg["Subject"] = item.subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = item.internet_message_id
    if item.in_reply_to:
        msg["In-Reply-To"] = item.in_reply_to
        msg["References"] = " ".join(item.references)
    for header in item.headers:
        msg[header["name"]] = header["value"]
    msg.set_content(str(item.body.get("content", "")), subtype="html")
    return msg.as_bytes()


# -- a small OData $filter evaluator -------------------------------------------------------------

_TOKEN = re.compile(r"\(|\)|'(?:[^']|'')*'|[^\s()]+")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "le": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
}
_PROPERTIES = {
    "internetMessageId": lambda i: i.internet_message_id,
    "subject": lambda i: i.subject,
    "isRead": lambda i: i.is_read,
    "receivedDateTime": lambda i: i.received.replace(microsecond=0),
    "importance": lambda i: i.importance,
    "flag/flagStatus": lambda i: i.flag_status,
    "conversationId": lambda i: i.conversation_id,
    "from/emailAddress/address": lambda i: ((i.sender or {}).get("emailAddress") or {}).get(
        "address"
    ),
}


def _value(item: Item, name: str) -> Any:
    if name not in _PROPERTIES:
        raise GraphError(400, "BadRequest", f"Could not find a property named '{name}'.")
    return _PROPERTIES[name](item)


def _literal(token: str) -> Any:
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    if token in ("true", "false"):
        return token == "true"
    try:
        return datetime.fromisoformat(token.replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(400, "BadRequest", f"Invalid filter clause: {token}") from None


def parse_filter(text: str) -> tuple[Callable[[Item], bool], list[str]]:
    """A predicate for an OData filter (comparisons joined by and/or, parentheses) and the
    properties it names, in order of first appearance."""
    tokens = _TOKEN.findall(text)
    properties: list[str] = []
    position = 0

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise GraphError(400, "BadRequest", "Invalid filter clause: unexpected end")
        position += 1
        return tokens[position - 1]

    def comparison() -> Callable[[Item], bool]:
        token = take()
        if token == "(":
            inner = disjunction()
            if take() != ")":
                raise GraphError(400, "BadRequest", "Invalid filter clause: ')' expected")
            return inner
        name, op, literal = token, take(), _literal(take())
        if op not in _OPS or name not in _PROPERTIES:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: {name} {op}")
        if name not in properties:
            properties.append(name)
        compare = _OPS[op]
        return lambda item: compare(_value(item, name), literal)

    def conjunction() -> Callable[[Item], bool]:
        parts = [comparison()]
        while position < len(tokens) and tokens[position] == "and":
            take()
            parts.append(comparison())
        return lambda item: all(p(item) for p in parts)

    def disjunction() -> Callable[[Item], bool]:
        parts = [conjunction()]
        while position < len(tokens) and tokens[position] == "or":
            take()
            parts.append(conjunction())
        return lambda item: any(p(item) for p in parts)

    predicate = disjunction()
    if position != len(tokens):
        raise GraphError(400, "BadRequest", f"Invalid filter clause near {tokens[position]}")
    return predicate, properties


# -- a world: fake services, accounts and providers ------------------------------------------------


class GraphWorld:
    """A fake tenant with one mailbox per address, routed through ``respx_mock``, and
    providers for its accounts (built with ``NO_RETRY`` unless told otherwise)."""

    def __init__(
        self,
        clock: mw.VirtualClock,
        addresses: Iterable[str],
        respx_mock: Any,
        *,
        sent_copy_delay: float = 0,
    ) -> None:
        self.clock = clock
        self.entra = FakeEntra()
        self.graph = FakeGraph(clock, self.entra, sent_copy_delay=sent_copy_delay)
        respx_mock.route(host="graph.microsoft.com").mock(side_effect=self.graph.handle)
        self.accounts: list[mw.EmailAccount] = []
        self.credentials: dict[str, mw.Credentials] = {}
        self.saved: list[mw.Credentials] = []
        for n, address in enumerate(addresses):
            account = mw.EmailAccount(id=f"g{n}", address=address, provider="graph")
            self.graph.add_mailbox(address)
            self.accounts.append(account)
            self.credentials[account.id] = mw.Credentials(
                account_id=account.id,
                kind="oauth2",
                refresh_token=SecretStr(self.entra.connect(address)),
            )
        self.app = OAuthApp(client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET))
        self.context = ProviderContext(
            clock=clock,
            oauth={"microsoft": self.app},
            on_credentials=self._store,
            rng=random.Random(7),
        )

    async def _store(self, credentials: mw.Credentials) -> None:
        self.saved.append(credentials)
        self.credentials[credentials.account_id] = credentials

    def provider(
        self,
        account: mw.EmailAccount,
        *,
        retry: RetryPolicy = NO_RETRY,
        settings: GraphSettings | None = None,
        credentials: mw.Credentials | None = None,
    ) -> GraphProvider:
        return GraphProvider(
            account,
            credentials=credentials or self.credentials[account.id],
            settings=settings or GraphSettings(),
            context=self.context,
            retry=retry,
            msal_http_client=self.entra,
        )

    def outgoing(
        self, sender: mw.EmailAccount, recipient: str, **fields: Any
    ) -> mw.OutgoingMessage:
        return mw.OutgoingMessage(
            sender=sender.address,
            recipient=recipient,
            subject=fields.pop("subject", "Quarterly numbers"),
            text="Hi,\n\nthe numbers are in.\n\nBest",
            message_id=f"<{random.getrandbits(64):x}@{sender.domain}>",
            date=self.clock.now(),
            **fields,
        )
