"""One mailbox's channel to Microsoft Graph v1.0: limits, tokens, retries and error mapping.

Every request:

- carries ``Prefer: IdType="ImmutableId"``: the header applies only to the request it is on,
  and without it a message's id changes when it moves between folders
  (https://learn.microsoft.com/graph/outlook-immutable-id);
- waits for a slot among 4 concurrent requests and for a token of a 10,000-requests-per-10-
  minutes bucket: Outlook's limits per app and mailbox
  (https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits);
- waits out any ``Retry-After`` a 429 or 503 asked for, because throttled requests still
  count against the limit (https://learn.microsoft.com/graph/throttling);
- is retried (``_retry.with_retries``) on throttling and passing faults, except a request
  whose outcome is unknown after it was written (a send must never be repeated blindly).

HTTP failures become mailwarm errors here; httpx's exceptions never leave this module.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import certifi
import httpx

from mailwarm._clock import Clock
from mailwarm._errors import (
    AuthExpired,
    PermanentProviderError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    TransientProviderError,
)
from mailwarm.providers._graph_auth import GraphTokens
from mailwarm.providers._graph_wire import query_string
from mailwarm.providers._pacing import Cooldown, TokenBucket
from mailwarm.providers._retry import RetryPolicy, parse_retry_after, with_retries

__all__ = [
    "GRAPH_ROOT",
    "PREFER_IMMUTABLE_IDS",
    "GraphChannel",
    "GraphNotFound",
    "GraphUnavailable",
    "OutcomeUnknown",
]

log = logging.getLogger(__name__)

GRAPH_ROOT = "https://graph.microsoft.com/v1.0"
PREFER_IMMUTABLE_IDS = 'IdType="ImmutableId"'

CONCURRENT_REQUESTS = 4
REQUESTS_PER_WINDOW = 10_000
WINDOW = timedelta(minutes=10)
MAX_PAGES = 200

# 403 codes meaning the token lacks a permission (Exchange's and Entra ID's spellings).
_ACCESS_DENIED = frozenset({"ErrorAccessDenied", "AccessDenied", "Authorization_RequestDenied"})
# Exchange Online blocks submission after its sending limits are passed (EWS response codes
# ErrorExceededMessageLimit, ErrorMessageSubmissionBlocked): no retry helps before it lifts.
_SENDING_BLOCKED = frozenset({"ErrorExceededMessageLimit", "ErrorMessageSubmissionBlocked"})


class GraphNotFound(PermanentProviderError):
    """404: the item is not there (ErrorItemNotFound), e.g. a Sent copy not yet written."""


class GraphUnavailable(TransientProviderError):
    """503 Service Unavailable; ``retry_after`` seconds when Graph said how long."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OutcomeUnknown(TransientProviderError):
    """The request was written but no answer came (timeout, dropped connection, gateway
    error): it may have been carried out. Never retried; the caller checks what happened."""


class GraphChannel:
    """Requests for one mailbox (``user``: ``"me"`` or a user id / userPrincipalName)."""

    def __init__(
        self,
        *,
        tokens: GraphTokens,
        user: str,
        clock: Clock,
        rng: random.Random,
        policy: RetryPolicy,
        timeout: float,
        provider: str,
        account_id: str,
    ) -> None:
        self.tokens = tokens
        self.clock = clock
        self.rng = rng
        self.policy = policy
        self.provider = provider
        self.account_id = account_id
        self.root = f"{GRAPH_ROOT}/me" if user == "me" else f"{GRAPH_ROOT}/users/{quote(user)}"
        self.cooldown = Cooldown(clock)
        self._timeout = timeout
        self._concurrency = asyncio.Semaphore(CONCURRENT_REQUESTS)
        self._bucket = TokenBucket(REQUESTS_PER_WINDOW, WINDOW, clock)
        self._client: httpx.AsyncClient | None = None

    def url(self, path: str, params: Mapping[str, str | int] | None = None) -> str:
        """The absolute URL of ``path`` under the mailbox (``/messages/...``)."""
        url = f"{self.root}{path}"
        return f"{url}?{query_string(params)}" if params else url

    async def call(
        self,
        method: str,
        target: str,
        *,
        action: str,
        params: Mapping[str, str | int] | None = None,
        json: Any | None = None,
        unsafe: bool = False,
        permission: str = "Mail.ReadWrite",
    ) -> Any:
        """Send one request (retried per the policy) and return its JSON body, or ``None``
        for an empty answer (202, 204). ``target`` is a mailbox path or an absolute Graph URL.
        ``unsafe``: the request must not run twice (a send); an unknown outcome raises
        :class:`OutcomeUnknown` instead of retrying. ``permission`` names the delegated
        permission a 403 would be missing."""
        url = target if target.startswith(GRAPH_ROOT + "/") else self.url(target, params)

        async def attempt() -> Any:
            return await self._attempt(method, url, action, json, unsafe, permission)

        try:
            return await with_retries(
                attempt,
                clock=self.clock,
                rng=self.rng,
                policy=self.policy,
                retry_if=lambda exc: not isinstance(exc, OutcomeUnknown),
            )
        except ProviderError as exc:
            # Errors raised by the pacing helpers do not know whose they are.
            exc.provider = exc.provider or self.provider
            exc.account_id = exc.account_id or self.account_id
            raise

    async def pages(
        self, path: str, params: Mapping[str, str | int], *, action: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The ``value`` of each page of a collection, following ``@odata.nextLink``."""
        url: str | None = self.url(path, params)
        for _ in range(MAX_PAGES):
            if url is None:
                return
            body = await self.call("GET", url, action=action)
            if not isinstance(body, dict):
                raise self._error(TransientProviderError, f"Graph {action}: not a collection")
            yield [item for item in body.get("value", []) if isinstance(item, dict)]
            link = body.get("@odata.nextLink")
            # The bearer token goes nowhere but Graph, whatever a response says.
            if link is not None and not str(link).startswith(GRAPH_ROOT + "/"):
                raise self._error(
                    PermanentProviderError, f"Graph {action}: nextLink outside {GRAPH_ROOT}"
                )
            url = str(link) if link is not None else None
        log.warning("Graph %s: stopped after %d pages", action, MAX_PAGES)

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout), follow_redirects=False, verify=_tls()
            )
        return self._client

    async def _attempt(
        self, method: str, url: str, action: str, json: Any, unsafe: bool, permission: str
    ) -> Any:
        token = await self.tokens.access_token()
        response = await self._send(method, url, token, json, action, unsafe)
        if response.status_code == 401:
            # An access token can be revoked before it expires: refresh once, then give up.
            token = await self.tokens.refresh(token)
            response = await self._send(method, url, token, json, action, unsafe)
            if response.status_code == 401:
                raise self._error(
                    AuthExpired,
                    f"Graph {action}: a fresh token was refused too (HTTP 401 "
                    f"{_error_code(response)}): reconnect the account",
                )
        return self._result(response, action, unsafe, permission)

    async def _send(
        self, method: str, url: str, token: str, json: Any, action: str, unsafe: bool
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "Prefer": PREFER_IMMUTABLE_IDS,
            "Accept": "application/json",
        }
        async with self._concurrency:
            await self.cooldown.wait(max_wait=self.policy.max_wait)
            await self._bucket.acquire(1, max_wait=self.policy.max_wait)
            try:
                return await self._http().request(method, url, headers=headers, json=json)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing was written: safe to try again, even for a send.
                raise self._error(
                    TransientProviderError, f"Graph {action}: no connection ({_name(exc)})"
                ) from exc
            except httpx.TransportError as exc:
                if unsafe:
                    raise self._error(
                        OutcomeUnknown, f"Graph {action}: no answer ({_name(exc)})"
                    ) from exc
                raise self._error(
                    TransientProviderError, f"Graph {action}: connection failed ({_name(exc)})"
                ) from exc
            except httpx.HTTPError as exc:
                raise self._error(
                    TransientProviderError, f"Graph {action}: request failed ({_name(exc)})"
                ) from exc

    def _result(self, response: httpx.Response, action: str, unsafe: bool, permission: str) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise self._error(
                    TransientProviderError, f"Graph {action}: unreadable answer (HTTP {status})"
                ) from None
        code = _error_code(response)
        detail = f"Graph {action}: HTTP {status}" + (f" {code}" if code else "")
        if status in (429, 503):
            wait = parse_retry_after(response.headers.get("Retry-After"), self.clock.now())
            if wait is not None:
                self.cooldown.block_for(wait)
            if status == 429 or (wait is not None and wait > self.policy.max_wait):
                raise RateLimited(
                    detail, retry_after=wait, provider=self.provider, account_id=self.account_id
                )
            raise self._error(GraphUnavailable, detail, retry_after=wait)
        if unsafe and status in (500, 502, 504):
            # A gateway error or timeout after the request reached Graph: it may have run.
            raise self._error(OutcomeUnknown, detail)
        if status >= 500:
            raise self._error(TransientProviderError, detail)
        if status == 403 and code in _ACCESS_DENIED:
            raise self._error(
                AuthExpired,
                f"{detail}: the app lacks the delegated permission {permission} (or its "
                "consent was withdrawn); grant it in Entra ID, then reconnect the account",
            )
        if status == 403 and code in _SENDING_BLOCKED:
            raise self._error(
                QuotaExhausted,
                f"{detail}: Exchange Online is blocking sends from this mailbox until its "
                "sending limits reset (or an admin releases it)",
            )
        if status == 404:
            raise self._error(GraphNotFound, detail)
        raise self._error(PermanentProviderError, detail)

    def _error(self, kind: type[ProviderError], message: str, **extra: Any) -> ProviderError:
        error = kind(message, **extra)
        error.provider, error.account_id = self.provider, self.account_id
        return error


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context (with certifi's CA bundle, httpx's default) for every mailbox:
    loading the bundle per client would cost each provider tens of milliseconds."""
    return ssl.create_default_context(cafile=certifi.where())


def _error_code(response: httpx.Response) -> str:
    """Graph's ``error.code`` (``{"error": {"code": ..., "message": ...}}``), or ``""``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if code else ""


def _name(exc: BaseException) -> str:
    return type(exc).__name__
