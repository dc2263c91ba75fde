"""A stateful fake of the Gmail API v1 and Google's token endpoint, served through respx.

It holds several users' mailboxes (messages with ids, threadIds, labels, raw MIME, history)
and answers the documented JSON shapes (https://developers.google.com/gmail/api/reference/
rest). Every request is first checked against the discovery document that
google-api-python-client ships (``gmail.v1.json``): method and path, query parameters and
their types, and body fields must be what the official API declares; every answer's fields
must be in the response schema. :func:`serve` fails the test at teardown if anything did not.

Mail between hosted users is delivered at once. ``user+junk@`` / ``user+spam@`` lands in the
user's spam (``SPAM``), ``user+promo@`` in the Promotions tab; mail to addresses the fake does
not host goes "out to the Internet" (only the Sent copy stays), as with real Gmail.
"""

from __future__ import annotations

import base64
import email
import email.policy
import functools
import itertools
import json
import os
import random
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import getaddresses
from typing import Any
from urllib.parse import parse_qs, unquote

import googleapiclient
import httpx
import respx

import mailwarm as mw
from mailwarm.providers import ProviderContext
from mailwarm.providers._retry import NO_RETRY, RetryPolicy
from mailwarm.providers.gmail import GmailProvider, GmailSettings

DISCOVERY = os.path.join(
    os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "gmail.v1.json"
)
ROOT = "https://gmail.googleapis.com/"
TOKEN_URL = "https://oauth2.googleapis.com/token"
MODIFY = "https://www.googleapis.com/auth/gmail.modify"
READONLY = "https://www.googleapis.com/auth/gmail.readonly"
CLIENT = mw.providers.OAuthApp(
    client_id="fake-client.apps.googleusercontent.com", client_secret="fake-client-secret"
)

SYSTEM_LABELS = (
    "INBOX",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "SENT",
    "DRAFT",
    "CHAT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
)
NOT_APPLICABLE = frozenset({"SENT", "DRAFT", "CHAT"})  # guides/labels: cannot be set by hand


# -- the oracle: google-api-python-client's discovery document -----------------------------------


@dataclass(frozen=True)
class Method:
    id: str  # e.g. gmail.users.messages.list
    http: str
    pattern: re.Pattern[str]
    literals: int
    parameters: dict[str, Any]
    request: str | None
    response: str | None
    scopes: frozenset[str]

    @property
    def short(self) -> str:  # messages.list, users.getProfile
        parts = self.id.split(".")[1:]
        return ".".join(parts[1:]) if len(parts) > 2 else ".".join(parts)


class Discovery:
    """The Gmail API as its discovery document declares it."""

    def __init__(self, path: str = DISCOVERY) -> None:
        with open(path, encoding="utf-8") as f:
            self.doc: dict[str, Any] = json.load(f)
        self.globals: dict[str, Any] = self.doc["parameters"]
        self.schemas: dict[str, Any] = self.doc["schemas"]
        self.methods: list[Method] = []
        self._collect(self.doc["resources"])

    def _collect(self, resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for m in resource.get("methods", {}).values():
                flat = m["flatPath"]
                pieces = re.split(r"\{(\w+)\}", flat)  # literal, name, literal, ...
                regex = "".join(
                    f"(?P<{piece}>[^/:]+)" if i % 2 else re.escape(piece)
                    for i, piece in enumerate(pieces)
                )
                self.methods.append(
                    Method(
                        id=m["id"],
                        http=m["httpMethod"],
                        pattern=re.compile(f"^{regex}$"),
                        literals=len(re.sub(r"\{\w+\}", "", flat)),
                        parameters=m.get("parameters", {}),
                        request=m.get("request", {}).get("$ref"),
                        response=m.get("response", {}).get("$ref"),
                        scopes=frozenset(m.get("scopes", [])),
                    )
                )
            self._collect(resource.get("resources", {}))

    def match(self, http: str, path: str) -> tuple[Method, dict[str, str]] | None:
        """The method a request is for (literal segments win over ``{id}``)."""
        hits = []
        for m in self.methods:
            found = m.pattern.match(path)
            if m.http == http and found:
                hits.append((m, {k: unquote(v) for k, v in found.groupdict().items()}))
        return max(hits, key=lambda h: h[0].literals) if hits else None

    def query_problems(self, method: Method, query: dict[str, list[str]]) -> list[str]:
        problems = []
        for name, values in query.items():
            spec = method.parameters.get(name) or self.globals.get(name)
            if spec is None or spec.get("location") != "query":
                problems.append(f"{method.id} declares no query parameter {name!r}")
                continue
            if len(values) > 1 and not spec.get("repeated"):
                problems.append(f"{method.id}: {name} is not repeated but given {len(values)}x")
            for value in values:
                if "enum" in spec and value not in spec["enum"]:
                    problems.append(f"{method.id}: {name}={value!r} not in {spec['enum']}")
                if spec["type"] == "boolean" and value not in ("true", "false"):
                    problems.append(f"{method.id}: {name}={value!r} is not a boolean")
                if spec["type"] == "integer" and not value.isdigit():
                    problems.append(f"{method.id}: {name}={value!r} is not an integer")
        for name, spec in method.parameters.items():
            if spec.get("location") == "query" and spec.get("required") and name not in query:
                problems.append(f"{method.id}: required parameter {name} missing")
        return problems

    def body_problems(self, schema: str, value: Any, where: str, method_id: str) -> list[str]:
        """Fields of ``value`` that the schema does not declare (or of the wrong JSON type)."""
        spec = self.schemas[schema]
        if not isinstance(value, dict):
            return [f"{where}: expected an object ({schema})"]
        problems = []
        for name, item in value.items():
            prop = spec.get("properties", {}).get(name)
            if prop is None:
                problems.append(f"{where}: {schema} has no field {name!r}")
            else:
                problems += self._value_problems(prop, item, f"{where}.{name}", method_id)
        for name, prop in spec.get("properties", {}).items():
            required = prop.get("annotations", {}).get("required", [])
            if method_id in required and name not in value:
                problems.append(f"{where}: {method_id} requires {schema}.{name}")
        return problems

    def _value_problems(self, prop: dict[str, Any], item: Any, where: str, mid: str) -> list[str]:
        if "$ref" in prop:
            return self.body_problems(prop["$ref"], item, where, mid)
        kind = prop.get("type")
        if kind == "array":
            if not isinstance(item, list):
                return [f"{where}: expected an array"]
            return [p for x in item for p in self._value_problems(prop["items"], x, where, mid)]
        if kind == "string":
            if not isinstance(item, str):
                return [f"{where}: expected a string"]
            if prop.get("format") == "byte":
                try:
                    base64.urlsafe_b64decode(item + "=" * (-len(item) % 4))
                except ValueError:
                    return [f"{where}: not base64url"]
            return []
        if kind == "integer" and not isinstance(item, int):
            return [f"{where}: expected an integer"]
        if kind == "boolean" and not isinstance(item, bool):
            return [f"{where}: expected a boolean"]
        return []


_ORACLE: Discovery | None = None


def oracle() -> Discovery:
    global _ORACLE
    if _ORACLE is None:
        _ORACLE = Discovery()
    return _ORACLE


# -- mailboxes -------------------------------------------------------------------------------------


@dataclass
class FakeMessage:
    id: str
    thread_id: str
    labels: set[str]
    raw: bytes
    internal_date: int  # epoch ms
    history_id: int

    # compat32 parsing: the default policy's header objects make the fake ten times slower.
    @functools.cached_property
    def mime(self) -> email.message.Message:
        return email.message_from_bytes(self.raw, policy=email.policy.compat32)

    @functools.cached_property
    def message_id(self) -> str:
        return str(self.mime.get("Message-ID", "")).strip()

    @functools.cached_property
    def snippet(self) -> str:
        for part in self.mime.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    return payload.decode("utf-8", "replace")[:100].strip()
        return ""


@dataclass
class FakeUser:
    address: str
    refresh_token: str
    scopes: tuple[str, ...]
    messages: dict[str, FakeMessage] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    history_id: int = 1000
    oldest_history: int = 1000

    def record(self, message: FakeMessage, kind: str, labels: list[str] | None = None) -> None:
        self.history_id += 1
        message.history_id = self.history_id
        brief = {"id": message.id, "threadId": message.thread_id}
        entry: dict[str, Any] = {"id": str(self.history_id), "messages": [brief]}
        full = {**brief, "labelIds": sorted(message.labels)}
        if kind == "messageAdded":
            entry["messagesAdded"] = [{"message": full}]
        else:
            entry[kind] = [{"message": full, "labelIds": labels or []}]
        self.history.append(entry)


@dataclass
class Seen:
    """One request the fake answered."""

    method: str  # short name, e.g. messages.modify ("token" for the token endpoint)
    user: str | None
    params: dict[str, list[str]]
    body: Any
    at: datetime
    status: int = 0


@dataclass(frozen=True)
class Fault:
    """A wire-level answer (status, JSON error, headers) or a lost connection.

    ``lost="before"``: the connection is refused, nothing reaches Gmail; ``"after"``: Gmail
    acts, then the answer is lost (a read timeout); ``"dropped"``: a read timeout and Gmail
    did nothing. ``acted=True``: Gmail acts and still answers ``status`` (a 500 after all).
    """

    status: int = 503
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    lost: str | None = None
    acted: bool = False


def google_error(status: int, message: str, reason: str, api_status: str) -> dict[str, Any]:
    """Google's JSON error body (https://cloud.google.com/apis/design/errors)."""
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": api_status,
        }
    }


def unavailable(retry_after: str | None = None) -> Fault:
    headers = {"Retry-After": retry_after} if retry_after else {}
    body = google_error(503, "The service is currently unavailable.", "backendError", "UNAVAILABLE")
    return Fault(503, body, headers)


def rate_limited(retry_after: str | None = None, *, status: int = 429) -> Fault:
    headers = {"Retry-After": retry_after} if retry_after else {}
    reason = "rateLimitExceeded" if status == 429 else "userRateLimitExceeded"
    body = google_error(status, "User-rate limit exceeded.", reason, "RESOURCE_EXHAUSTED")
    return Fault(status, body, headers)


def mail_sending_limit(until: datetime) -> Fault:
    stamp = until.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    message = f"User-rate limit exceeded.  Retry after {stamp} (Mail sending)"
    return Fault(429, google_error(429, message, "rateLimitExceeded", "RESOURCE_EXHAUSTED"))


def forbidden(reason: str, message: str = "Forbidden") -> Fault:
    return Fault(403, google_error(403, message, reason, "PERMISSION_DENIED"))


def unauthorized() -> Fault:
    body = google_error(
        401, "Request had invalid authentication credentials.", "authError", "UNAUTHENTICATED"
    )
    return Fault(401, body, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})


def _subject_key(subject: str) -> str:
    return re.sub(r"^\s*((re|fwd?|aw)\s*:\s*)+", "", subject, flags=re.I).strip().lower()


def _bare(message_id: str) -> str:
    return message_id.strip().removeprefix("<").removesuffix(">").lower()


def _valid_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return bool(local and at and "." in domain and " " not in address)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, reason: str = "invalidArgument") -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


# -- the fake --------------------------------------------------------------------------------------


class GmailFake:
    """Gmail for a few users, on one clock. Use :func:`serve` to route requests to it."""

    def __init__(self, clock: mw.VirtualClock) -> None:
        self.clock = clock
        self.oracle = oracle()
        self.users: dict[str, FakeUser] = {}
        self.tokens: dict[str, tuple[str, datetime, tuple[str, ...]]] = {}
        self.seen: list[Seen] = []
        self.violations: list[str] = []
        self.faults: dict[tuple[str, str], list[Fault]] = {}
        self.refresh_faults: dict[str, list[str]] = {}
        self.rotate_refresh_tokens = False
        self._ids = itertools.count(0x18C5F2A3B4D50000)

    # -- set-up and inspection ----------------------------------------------------------------

    def add_user(self, address: str, *, scopes: tuple[str, ...] = (MODIFY,)) -> FakeUser:
        user = FakeUser(address.lower(), f"1//fake-refresh-{secrets.token_hex(8)}", scopes)
        self.users[user.address] = user
        return user

    def issue_token(self, address: str, lifetime: timedelta = timedelta(hours=1)) -> str:
        user = self.users[address.lower()]
        token = f"ya29.fake-{secrets.token_hex(12)}"
        self.tokens[token] = (user.address, self.clock.now() + lifetime, user.scopes)
        return token

    def credentials(self, account: mw.EmailAccount, **changes: Any) -> mw.Credentials:
        """Working OAuth credentials for a hosted account (a fresh hour-long token)."""
        user = self.users[account.address.lower()]
        values: dict[str, Any] = {
            "account_id": account.id,
            "kind": "oauth2",
            "access_token": self.issue_token(user.address),
            "refresh_token": user.refresh_token,
            "token_expires_at": self.clock.now() + timedelta(hours=1),
            "scopes": list(user.scopes),
        }
        values.update(changes)
        return mw.Credentials(**values)

    def revoke_access_tokens(self, address: str) -> None:
        """Every access token of the user stops working (the next call gets 401)."""
        for token, (owner, _, _) in list(self.tokens.items()):
            if owner == address.lower():
                del self.tokens[token]

    def fail_next(self, address: str, method: str, fault: Fault, times: int = 1) -> None:
        """The user's next ``times`` calls of ``method`` (e.g. ``messages.send``) get ``fault``."""
        assert any(m.short == method for m in self.oracle.methods), method
        self.faults.setdefault((address.lower(), method), []).extend([fault] * times)

    def fail_refresh(self, address: str, error: str = "invalid_grant", times: int = 1) -> None:
        """The user's next ``times`` refreshes are refused with OAuth ``error``."""
        self.refresh_faults.setdefault(address.lower(), []).extend([error] * times)

    def calls(self, method: str, user: str | None = None) -> list[Seen]:
        return [s for s in self.seen if s.method == method and (user is None or s.user == user)]

    def mailbox(self, address: str) -> list[FakeMessage]:
        return sorted(self.users[address.lower()].messages.values(), key=lambda m: m.id)

    def received(self, address: str, message_id: str) -> FakeMessage:
        (copy,) = [
            m
            for m in self.mailbox(address)
            if _bare(m.message_id) == _bare(message_id) and "SENT" not in m.labels
        ]
        return copy

    def expire_history(self, address: str) -> None:
        """Gmail drops old history: any start id before now gets 404."""
        user = self.users[address.lower()]
        user.history.clear()
        user.oldest_history = user.history_id

    def deliver(
        self, address: str, raw: bytes, *, labels: tuple[str, ...] = ("INBOX", "UNREAD")
    ) -> FakeMessage:
        """Put a message straight into a mailbox, as if it came from outside."""
        user = self.users[address.lower()]
        return self._store(user, raw, set(labels), self._thread_for(user, raw))

    # -- routing ----------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(TOKEN_URL):
            return self._token(request)
        path = request.url.path.lstrip("/")
        found = self.oracle.match(request.method, path)
        query = parse_qs(request.url.query.decode(), keep_blank_values=True)
        body: Any = json.loads(request.content) if request.content else None
        if found is None:
            return self._violation(f"{request.method} /{path} is not a Gmail API method")
        method, path_params = found
        problems = self.oracle.query_problems(method, query)
        if method.request is not None:
            problems += self.oracle.body_problems(method.request, body, "body", method.id)
        elif body is not None:
            problems.append(f"{method.id} takes no request body")
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        owner = self.tokens.get(token or "")
        seen = Seen(method.short, owner[0] if owner else None, query, body, self.clock.now())
        self.seen.append(seen)
        if problems:
            return self._violation("; ".join(problems))
        response = self._answer(method, path_params, query, body, owner)
        seen.status = response.status_code
        return response

    def _violation(self, problem: str) -> httpx.Response:
        self.violations.append(problem)
        return httpx.Response(
            400, json=google_error(400, f"fake: {problem}", "badRequest", "INVALID_ARGUMENT")
        )

    def _answer(
        self,
        method: Method,
        path_params: dict[str, str],
        query: dict[str, list[str]],
        body: Any,
        owner: tuple[str, datetime, tuple[str, ...]] | None,
    ) -> httpx.Response:
        fault = None
        if owner is not None:
            queue = self.faults.get((owner[0], method.short))
            fault = queue.pop(0) if queue else None
        if fault is not None and fault.lost == "before":
            raise httpx.ConnectError("connection refused (fake)")
        if fault is not None and fault.lost == "dropped":
            raise httpx.ReadTimeout("no answer (fake)")
        if fault is not None and fault.lost is None and not fault.acted:
            return httpx.Response(fault.status, json=fault.body, headers=fault.headers)
        if owner is None or owner[1] <= self.clock.now():
            return httpx.Response(unauthorized().status, json=unauthorized().body)
        if path_params.get("userId") not in ("me", owner[0]):
            return httpx.Response(
                403, json=google_error(403, "Delegation denied", "forbidden", "PERMISSION_DENIED")
            )
        if not method.scopes & set(owner[2]):
            body_ = google_error(
                403,
                "Request had insufficient authentication scopes.",
                "insufficientPermissions",
                "PERMISSION_DENIED",
            )
            return httpx.Response(403, json=body_)
        user = self.users[owner[0]]
        name = re.sub(r"([A-Z])", r"_\1", method.short.replace(".", "_")).lower()
        handler = getattr(self, f"_{name}", None)  # messages.batchModify: _messages_batch_modify
        assert handler is not None, f"the fake does not implement {method.id}"
        try:
            status, answer = handler(user, path_params, {k: v for k, v in query.items()}, body)
        except _BadRequest as exc:
            api_status = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}.get(exc.status, "UNKNOWN")
            error = google_error(exc.status, exc.message, exc.reason, api_status)
            return httpx.Response(exc.status, json=error)
        if method.response is not None and answer is not None:
            problems = self.oracle.body_problems(method.response, answer, "answer", "")
            assert not problems, f"the fake's own {method.id} answer is off: {problems}"
        if fault is not None and fault.lost == "after":
            raise httpx.ReadTimeout("the answer was lost (fake)")
        if fault is not None and fault.acted:
            return httpx.Response(fault.status, json=fault.body, headers=fault.headers)
        return httpx.Response(status) if answer is None else httpx.Response(status, json=answer)

    # -- OAuth ----------------------------------------------------------------------------------

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        user = next(
            (u for u in self.users.values() if u.refresh_token == form.get("refresh_token")), None
        )
        self.seen.append(Seen("token", user.address if user else None, {}, form, self.clock.now()))
        expected = {"grant_type", "refresh_token", "client_id", "client_secret"}
        if set(form) != expected or form["grant_type"] != "refresh_token":
            self.violations.append(f"token request with fields {sorted(form)}")
            return httpx.Response(400, json={"error": "invalid_request"})
        if form["client_id"] != CLIENT.client_id or (
            CLIENT.client_secret is None
            or form["client_secret"] != CLIENT.client_secret.get_secret_value()
        ):
            return httpx.Response(
                401, json={"error": "invalid_client", "error_description": "Unauthorized"}
            )
        queue = self.refresh_faults.get(user.address if user else "", [])
        if user is None or queue:
            error = queue.pop(0) if queue else "invalid_grant"
            return httpx.Response(
                400,
                json={"error": error, "error_description": "Token has been expired or revoked."},
            )
        answer: dict[str, Any] = {
            "access_token": self.issue_token(user.address),
            "expires_in": 3599,
            "scope": " ".join(user.scopes),
            "token_type": "Bearer",
        }
        if self.rotate_refresh_tokens:
            user.refresh_token = answer["refresh_token"] = f"1//fake-refresh-{secrets.token_hex(8)}"
        return httpx.Response(200, json=answer)

    # -- messages ---------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{next(self._ids):016x}"

    def _thread_for(self, user: FakeUser, raw: bytes, requested: str | None = None) -> str:
        mime = email.message_from_bytes(raw, policy=email.policy.compat32)
        subject = _subject_key(str(mime.get("Subject", "")))
        parents = {
            _bare(p)
            for p in f"{mime.get('References', '')} {mime.get('In-Reply-To', '')}".split()
            if p
        }
        # guides/threads: a message joins a thread only if threadId is given (on send), the
        # References/In-Reply-To headers point into it, and the Subject matches.
        for m in user.messages.values():
            if requested is not None and m.thread_id != requested:
                continue
            if _bare(m.message_id) in parents and _subject_key(str(m.mime["Subject"])) == subject:
                return m.thread_id
        return self._new_id()

    def _store(self, user: FakeUser, raw: bytes, labels: set[str], thread: str) -> FakeMessage:
        ms = int(self.clock.now().timestamp() * 1000)
        message = FakeMessage(self._new_id(), thread, labels, raw, ms, 0)
        user.messages[message.id] = message
        user.record(message, "messageAdded")
        return message

    def _resolve(self, address: str) -> tuple[FakeUser | None, set[str]]:
        address = address.lower()
        local, _, domain = address.rpartition("@")
        base, _, tag = local.partition("+")
        user = self.users.get(address) or self.users.get(f"{base}@{domain}")
        if tag in ("junk", "spam"):
            return user, {"SPAM", "UNREAD"}
        if tag == "promo":
            return user, {"INBOX", "UNREAD", "CATEGORY_PROMOTIONS"}
        return user, {"INBOX", "UNREAD", "CATEGORY_PERSONAL"}

    def _messages_send(self, user: FakeUser, _p: Any, _q: Any, body: Any) -> tuple[int, Any]:
        raw = base64.urlsafe_b64decode(body["raw"] + "=" * (-len(body["raw"]) % 4))
        mime = email.message_from_bytes(raw, policy=email.policy.compat32)
        recipients = [a for _, a in getaddresses([str(mime.get("To", ""))])]
        if not recipients or not all(_valid_address(a) for a in recipients):
            raise _BadRequest(400, "Invalid To header")
        thread_id = body.get("threadId")
        if thread_id and not any(m.thread_id == thread_id for m in user.messages.values()):
            raise _BadRequest(404, "Requested entity was not found.", "notFound")
        thread = self._thread_for(user, raw, thread_id) if thread_id else self._new_id()
        sent = self._store(user, raw, {"SENT"}, thread)
        for address in recipients:
            target, labels = self._resolve(address)
            if target is user:
                sent.labels |= {"INBOX", "UNREAD"}
            elif target is not None:
                self._store(target, raw, labels, self._thread_for(target, raw))
        return 200, {"id": sent.id, "threadId": sent.thread_id, "labelIds": sorted(sent.labels)}

    def _message(self, user: FakeUser, message_id: str) -> FakeMessage:
        if not re.fullmatch(r"[0-9a-f]{16}", message_id):
            raise _BadRequest(400, "Invalid id value")
        if message_id not in user.messages:
            raise _BadRequest(404, "Requested entity was not found.", "notFound")
        return user.messages[message_id]

    def _messages_get(self, user: FakeUser, p: dict[str, str], q: Any, _b: Any) -> tuple[int, Any]:
        m = self._message(user, p["id"])
        form = q.get("format", ["full"])[0]
        answer: dict[str, Any] = {
            "id": m.id,
            "threadId": m.thread_id,
            "labelIds": sorted(m.labels),
            "snippet": m.snippet,
            "sizeEstimate": len(m.raw),
            "historyId": str(m.history_id),
            "internalDate": str(m.internal_date),
        }
        if form == "raw":
            answer["raw"] = base64.urlsafe_b64encode(m.raw).decode()
        elif form in ("metadata", "full"):
            wanted = {h.lower() for h in q.get("metadataHeaders", [])}
            headers = [
                {"name": k, "value": re.sub(r"\r?\n(?=[ \t])", "", str(v))}  # unfolded
                for k, v in m.mime.items()
                if form == "full" or not wanted or k.lower() in wanted
            ]
            answer["payload"] = {"mimeType": m.mime.get_content_type(), "headers": headers}
        return 200, answer

    def _search(self, user: FakeUser, query: str) -> list[FakeMessage]:
        groups: list[list[str]] = []
        for token in re.findall(r"\{[^}]*\}|\S+", query):
            groups.append(token[1:-1].split() if token.startswith("{") else [token])
        return [
            m
            for m in user.messages.values()
            if all(any(self._term(m, t) for t in g) for g in groups)
        ]

    def _term(self, m: FakeMessage, term: str) -> bool:
        negated = term.startswith("-")
        key, _, value = term.removeprefix("-").partition(":")
        if key == "rfc822msgid":
            result = _bare(m.message_id) == _bare(value)
        elif key == "in" and value in ("inbox", "spam", "sent", "trash"):
            result = value.upper() in m.labels
        elif key in ("after", "before") and value.isdigit():
            stamp = int(value) * 1000
            result = m.internal_date > stamp if key == "after" else m.internal_date < stamp
        elif key == "is" and value in ("unread", "starred", "important"):
            result = value.upper() in m.labels
        else:  # stricter than Gmail, which would search the text: catches typos in the client
            raise _BadRequest(400, f"fake: unsupported search term {term!r}")
        return result != negated

    def _messages_list(self, user: FakeUser, _p: Any, q: Any, _b: Any) -> tuple[int, Any]:
        found = list(user.messages.values())
        if q.get("includeSpamTrash", ["false"])[0] != "true":
            found = [m for m in found if not m.labels & {"SPAM", "TRASH"}]
        for label in q.get("labelIds", []):
            found = [m for m in found if label in m.labels]
        if "q" in q:
            keep = {m.id for m in self._search(user, q["q"][0])}
            found = [m for m in found if m.id in keep]
        found.sort(key=lambda m: (m.internal_date, m.id), reverse=True)  # newest first
        start = int(q.get("pageToken", ["0"])[0])
        size = min(int(q.get("maxResults", ["100"])[0]), 500)
        page = found[start : start + size]
        answer: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            answer["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + size < len(found):
            answer["nextPageToken"] = str(start + size)
        return 200, answer

    def _change_labels(self, user: FakeUser, m: FakeMessage, body: dict[str, Any]) -> None:
        add, remove = body.get("addLabelIds", []), body.get("removeLabelIds", [])
        for label in (*add, *remove):
            if label not in SYSTEM_LABELS or label in NOT_APPLICABLE:
                raise _BadRequest(400, f"Invalid label: {label}")
        if len(add) > 100 or len(remove) > 100:
            raise _BadRequest(400, "Too many labels")
        added = sorted(set(add) - m.labels)
        removed = sorted(set(remove) & m.labels - set(add))
        m.labels = (m.labels | set(added)) - set(removed)
        if added:
            user.record(m, "labelsAdded", added)
        if removed:
            user.record(m, "labelsRemoved", removed)

    def _messages_modify(self, user: FakeUser, p: dict[str, str], _q: Any, body: Any) -> Any:
        m = self._message(user, p["id"])
        self._change_labels(user, m, body)
        return 200, {"id": m.id, "threadId": m.thread_id, "labelIds": sorted(m.labels)}

    def _messages_batch_modify(self, user: FakeUser, _p: Any, _q: Any, body: Any) -> Any:
        ids = body.get("ids", [])
        if not ids or len(ids) > 1000:
            raise _BadRequest(400, "ids must hold 1 to 1000 message ids")
        for message_id in ids:
            self._change_labels(user, self._message(user, message_id), body)
        return 204, None

    def _labels_list(self, user: FakeUser, *_: Any) -> tuple[int, Any]:
        return 200, {"labels": [{"id": x, "name": x, "type": "system"} for x in SYSTEM_LABELS]}

    def _users_get_profile(self, user: FakeUser, *_: Any) -> tuple[int, Any]:
        return 200, {
            "emailAddress": user.address,
            "messagesTotal": len(user.messages),
            "threadsTotal": len({m.thread_id for m in user.messages.values()}),
            "historyId": str(user.history_id),
        }

    def _history_list(self, user: FakeUser, _p: Any, q: Any, _b: Any) -> tuple[int, Any]:
        start = int(q["startHistoryId"][0])
        if start < user.oldest_history:
            raise _BadRequest(404, "Requested entity was not found.", "notFound")
        types = set(q.get("historyTypes", [])) or {
            "messageAdded",
            "messageDeleted",
            "labelAdded",
            "labelRemoved",
        }
        keys = {
            "messageAdded": "messagesAdded",
            "labelAdded": "labelsAdded",
            "labelRemoved": "labelsRemoved",
            "messageDeleted": "messagesDeleted",
        }
        records = [
            r for r in user.history if int(r["id"]) > start and any(keys[t] in r for t in types)
        ]
        offset = int(q.get("pageToken", ["0"])[0])
        size = min(int(q.get("maxResults", ["100"])[0]), 500)
        answer: dict[str, Any] = {"historyId": str(user.history_id)}
        if records[offset : offset + size]:
            answer["history"] = records[offset : offset + size]
        if offset + size < len(records):
            answer["nextPageToken"] = str(offset + size)
        return 200, answer


def serve(respx_mock: respx.MockRouter, clock: mw.VirtualClock) -> Iterator[GmailFake]:
    """Route Gmail and the token endpoint to a new fake; at the end, fail on any request the
    discovery document does not allow. Use as ``yield from serve(respx_mock, clock)``."""
    fake = GmailFake(clock)
    respx_mock.route(host__in=["gmail.googleapis.com", "oauth2.googleapis.com"]).mock(
        side_effect=fake.handle
    )
    yield fake
    assert not fake.violations, "requests the Gmail API does not declare:\n" + "\n".join(
        fake.violations
    )


def context(clock: mw.VirtualClock, stored: list[mw.Credentials] | None = None) -> ProviderContext:
    """A provider context with the fake's OAuth client; rotated credentials go to ``stored``."""

    async def keep(credentials: mw.Credentials) -> None:
        if stored is not None:
            stored.append(credentials)

    return ProviderContext(
        clock=clock, oauth={"google": CLIENT}, on_credentials=keep, rng=random.Random(7)
    )


def provider(
    fake: GmailFake,
    account: mw.EmailAccount,
    *,
    retry: RetryPolicy = NO_RETRY,
    settings: GmailSettings | None = None,
    credentials: mw.Credentials | None = None,
    stored: list[mw.Credentials] | None = None,
) -> GmailProvider:
    """A provider for a hosted account, with working credentials unless given others."""
    if account.address.lower() not in fake.users:
        fake.add_user(account.address)
    return GmailProvider(
        account,
        credentials=credentials or fake.credentials(account),
        settings=settings or GmailSettings(),
        context=context(fake.clock, stored),
        retry=retry,
    )


def outgoing(
    clock: mw.VirtualClock, sender: mw.EmailAccount, recipient: str, **fields: Any
) -> mw.OutgoingMessage:
    """A plain message with a fresh Message-ID on the sender's domain."""
    values: dict[str, Any] = {
        "sender": sender.address,
        "recipient": recipient,
        "subject": "Venue options",
        "text": "Hi,\n\nthe two venues are in the doc.\n\nBest",
        "message_id": f"<{secrets.token_hex(8)}@{sender.domain}>",
        "date": clock.now(),
    }
    values.update(fields)
    return mw.OutgoingMessage(**values)
